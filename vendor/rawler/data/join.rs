use std::env;
use std::fs::File;
use std::io::prelude::*;
use std::path::Path;

extern crate glob;
use self::glob::glob;
extern crate toml;
use toml::Value;
extern crate rustc_version;
use rustc_version::{Version, version};

fn main() {
  join_cameras();
  join_lenses();
}

fn join_cameras() {
  let out_dir = env::var("OUT_DIR").expect("Missing ENV OUT_DIR");
  let dest_path = Path::new(&out_dir).join("cameras.toml");
  let mut out = File::create(dest_path).expect("Unable to create output file");
  // Luminary patch: an index of cameras.toml (see RawLoader), so a process that decodes one
  // file parses one camera's definition instead of all of them.
  let mut index = String::new();
  let mut offset = 0;

  for entry in glob("./data/cameras/*/**/*.toml").expect("Failed to read glob pattern") {
    let path = entry.expect("Invalid glob entry");
    let mut f = File::open(&path).expect("failed to open camera definition file");
    let mut toml = String::new();
    f.read_to_string(&mut toml).expect("Failed to read camera definition file");
    let chunk = format!("[[cameras]]\n{toml}\n");

    let camera = match chunk.parse::<Value>() {
      Ok(v) => v["cameras"][0].clone(),
      Err(e) => panic!("Error parsing {:?}: {:?}", path, e),
    };
    index_camera(&mut index, offset, offset + chunk.len(), &camera);
    offset += chunk.len();

    out.write_all(chunk.as_bytes()).expect("Failed to write");
  }
  std::fs::write(Path::new(&out_dir).join("cameras_index.txt"), index).expect("Unable to write the camera index");

  // Check for a minimum version
  if version().expect("version failed") < Version::parse("1.31.0").expect("version parse failed") {
    println!("cargo:rustc-cfg=needs_chunks_exact");
  }
}

/// One camera file's lines in the index: `C start end` (its byte range in cameras.toml), then
/// `N make model` for every make and model name it may answer to, and `F size` for every
/// file size it names. Candidates only: the loader parses the file and matches exactly.
fn index_camera(index: &mut String, start: usize, end: usize, camera: &Value) {
  let text = |v: Option<&Value>| v.and_then(|v| v.as_str()).unwrap_or("").to_string();
  let modes: Vec<&Value> = camera.get("modes").and_then(|m| m.as_array()).map(|m| m.iter().collect()).unwrap_or_default();
  let mut makes = vec![text(camera.get("make"))];
  makes.extend(modes.iter().filter_map(|m| m.get("make")).map(|v| text(Some(v))));
  let mut models = vec![text(camera.get("model"))];
  if let Some(aliases) = camera.get("model_aliases").and_then(|a| a.as_array()) {
    models.extend(aliases.iter().map(|a| text(a.get(0))));
  }
  let mut sizes: Vec<i64> = std::iter::once(camera).chain(modes.iter().copied()).filter_map(|t| t.get("filesize")).filter_map(|v| v.as_integer()).collect();
  sizes.retain(|&s| s > 0);
  index.push_str(&format!("C\t{start}\t{end}\n"));
  for make in &makes {
    for model in &models {
      assert!(!(make.clone() + model).contains(['\t', '\n']), "camera names must not hold tabs or line breaks");
      index.push_str(&format!("N\t{make}\t{model}\n"));
    }
  }
  for size in sizes {
    index.push_str(&format!("F\t{size}\n"));
  }
}

fn join_lenses() {
  let out_dir = env::var("OUT_DIR").expect("Missing ENV OUT_DIR");
  let dest_path = Path::new(&out_dir).join("lenses.toml");
  let mut out = File::create(dest_path).expect("Unable to create output file");

  for entry in glob("./data/lenses/*/**/*.toml").expect("Failed to read glob pattern") {
    let path = entry.expect("Invalid glob entry");
    let mut f = File::open(&path).expect("failed to open lens definition file");
    let mut toml = String::new();
    f.read_to_string(&mut toml).expect("Failed to read lens definition file");

    {
      match toml.parse::<Value>() {
        Ok(_) => {}
        Err(e) => panic!("Error parsing {:?}: {:?}", path, e),
      };
    }

    out.write_all(&toml.into_bytes()).expect("Failed to write");
    out.write_all(b"\n").expect("Failed to write");
  }

  // Check for a minimum version
  if version().expect("version failed") < Version::parse("1.31.0").expect("version parse failed") {
    println!("cargo:rustc-cfg=needs_chunks_exact");
  }
}
