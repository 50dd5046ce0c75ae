//! The "AI staging" of the mocks for staging models (Replicate's Qwen image edit): furniture
//! pasted into the room, the rest of the picture returned untouched.
//!
//! Objects are placed by fractions of the picture, so a test can draw the same footprint at
//! full resolution ([`furniture_at`]) and tell the engine's new content from the room's own
//! pixels, which the transfer must keep.

use image::{Rgb, RgbImage};

/// What covers the point (`fx`, `fy`), both fractions of the picture's width and height:
/// the colour of the furniture there, or `None` where the room shows.
pub fn furniture_at(fx: f32, fy: f32) -> Option<[u8; 3]> {
    let fabric = |fx: f32, fy: f32| {
        // A woven fabric: a soft diagonal rib, so the object has texture of its own.
        let rib = ((fx * 180.0 + fy * 120.0).sin() * 0.5 + 0.5) * 14.0;
        [(62.0 + rib) as u8, (96.0 + rib) as u8, (98.0 + rib) as u8]
    };
    // Sofa: seat and back, a rectangle with a higher back part.
    if (0.16..0.54).contains(&fx) && (0.66..0.84).contains(&fy) {
        return Some(fabric(fx, fy));
    }
    if (0.16..0.54).contains(&fx) && (0.56..0.66).contains(&fy) {
        let c = fabric(fx, fy);
        return Some(c.map(|v| v.saturating_sub(18)));
    }
    // Coffee table: a walnut ellipse with grain.
    let (dx, dy) = ((fx - 0.66) / 0.10, (fy - 0.84) / 0.04);
    if dx * dx + dy * dy < 1.0 {
        let grain = ((fy * 900.0 + (fx * 40.0).sin() * 3.0).sin() * 0.5 + 0.5) * 20.0;
        return Some([
            (110.0 + grain) as u8,
            (70.0 + grain * 0.6) as u8,
            (42.0 + grain * 0.3) as u8,
        ]);
    }
    // Floor lamp: a thin pole and a cream shade.
    if (0.795..0.805).contains(&fx) && (0.42..0.86).contains(&fy) {
        return Some([40, 40, 42]);
    }
    if (0.36..0.44).contains(&fy) {
        let half = 0.025 + (fy - 0.36) * 0.35;
        if (fx - 0.80).abs() < half {
            return Some([236, 226, 200]);
        }
    }
    None
}

/// The room with the furniture in it.
pub fn stage_room(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let mut out = img.clone();
    for (x, y, px) in out.enumerate_pixels_mut() {
        if let Some(c) = furniture_at((x as f32 + 0.5) / w, (y as f32 + 0.5) / h) {
            *px = Rgb(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_adds_furniture_and_leaves_the_rest() {
        let room = RgbImage::from_fn(400, 300, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let staged = stage_room(&room);
        let changed = room
            .pixels()
            .zip(staged.pixels())
            .filter(|(a, b)| a != b)
            .count();
        let share = changed as f64 / (400.0 * 300.0);
        assert!(
            (0.08..0.3).contains(&share),
            "furniture covers {share:.3} of the room"
        );
        // The top of the room (walls, windows) is never touched.
        for y in 0..100 {
            for x in 0..400 {
                assert_eq!(room.get_pixel(x, y), staged.get_pixel(x, y));
            }
        }
    }
}
