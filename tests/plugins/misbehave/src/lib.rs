//! A plugin that misbehaves on purpose, one way per preset, so the tests can prove that a
//! plugin failing in any way fails only its own job.

use luminary_plugin_api::*;

struct Misbehave;

impl Plugin for Misbehave {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("test.misbehave", "Misbehaving test plugin", "0.0.0")
    }

    fn presets(&self) -> Vec<PresetDescriptor> {
        let p = |id: &str| PresetDescriptor::look(id, id, "misbehaves");
        vec![
            p("fine"),
            p("panic"),
            p("segfault"),
            p("exit"),
            p("hang"),
            p("pixels-sepia").with_pixel_function(),
            p("pixels-panic").with_pixel_function(),
        ]
    }

    fn build_request(
        &self,
        preset: &str,
        _params: &Params,
        _facts: &ImageFacts,
    ) -> Result<EngineRequest, String> {
        match preset {
            "panic" => panic!("deliberate panic in build_request"),
            "segfault" => unsafe {
                // A null write the compiler cannot prove away: a real SIGSEGV.
                let p = std::ptr::null_mut::<u8>().wrapping_add(std::hint::black_box(0));
                p.write_volatile(1);
                unreachable!()
            },
            "exit" => std::process::exit(3),
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            },
            _ => {
                let mut r = Recipe::default();
                r.exposure.ev = 0.5;
                Ok(EngineRequest::new("brighten", r))
            }
        }
    }

    fn process_pixels(
        &self,
        preset: &str,
        _p: &Params,
        _f: &ImageFacts,
        image: &mut Image<'_>,
    ) -> Result<bool, String> {
        match preset {
            "pixels-panic" => panic!("deliberate panic in process_pixels"),
            "pixels-sepia" => {
                for px in image.data.chunks_exact_mut(3) {
                    let y = 0.2627 * px[0] + 0.6780 * px[1] + 0.0593 * px[2];
                    px[0] = y * 1.25;
                    px[1] = y * 1.0;
                    px[2] = y * 0.7;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

export_plugin!(Misbehave);
