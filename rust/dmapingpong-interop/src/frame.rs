//! vivid's "100% Colorbar" test pattern in `V4L2_PIX_FMT_RGB24`
//! (`drivers/media/common/v4l2-tpg`: eight vertical bars of equal width,
//! white, yellow, cyan, green, magenta, red, blue, black, at full
//! intensity; RGB formats are full range), with vivid's text off.

use crate::error::{Failure, Result};

/// The bars, left to right, as (R, G, B).
pub const BARS: [[u8; 3]; 8] = [
    [255, 255, 255],
    [255, 255, 0],
    [0, 255, 255],
    [0, 255, 0],
    [255, 0, 255],
    [255, 0, 0],
    [0, 0, 255],
    [0, 0, 0],
];

/// The byte a buffer is filled with before it is queued: a frame that was
/// not (wholly) captured into it leaves some of it.
pub const POISON: u8 = 0xa5;

/// Checks that `frame` (`height` rows of `bytesperline` bytes) holds the
/// colour bars in every row: each pixel of the middle half of each bar has
/// the bar's colour (the pattern generator may blend the pixels at a bar's
/// edges when it scales).
pub fn check_colorbar(
    frame: &[u8],
    width: usize,
    height: usize,
    bytesperline: usize,
) -> Result<()> {
    if width < 4 * BARS.len() || height == 0 {
        return Err(Failure::Check(format!(
            "a {width}x{height} frame is too small for the bars"
        )));
    }
    if frame.len() < height * bytesperline || bytesperline < 3 * width {
        return Err(Failure::Check(format!(
            "frame of {} bytes too small for {width}x{height} RGB24, {bytesperline} bytes per line",
            frame.len()
        )));
    }
    let bar = width / BARS.len();
    for y in 0..height {
        let row = &frame[y * bytesperline..][..3 * width];
        for (i, want) in BARS.iter().enumerate() {
            for x in i * bar + bar / 4..i * bar + bar - bar / 4 {
                let got = &row[3 * x..3 * x + 3];
                if got != want {
                    return Err(Failure::Check(format!(
                        "pixel ({x}, {y}) in bar {i} is {got:02x?}, expected {want:02x?} (100% colour bar)"
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: usize, height: usize) -> Vec<u8> {
        let mut f = Vec::new();
        for _ in 0..height {
            for x in 0..width {
                f.extend_from_slice(&BARS[x * 8 / width]);
            }
        }
        f
    }

    #[test]
    fn accepts_the_pattern_and_rejects_damage() {
        let (w, h) = (320, 4);
        let good = frame(w, h);
        check_colorbar(&good, w, h, 3 * w).unwrap();
        // A poisoned pixel in the middle of bar 3 of the last row.
        let mut bad = good.clone();
        let x = 3 * w / 8 + w / 16;
        bad[3 * ((h - 1) * w + x)] = POISON;
        let err = check_colorbar(&bad, w, h, 3 * w).unwrap_err().to_string();
        assert!(err.contains(&format!("pixel ({x}, {})", h - 1)), "{err}");
        // Bars in the wrong order, and a short frame.
        let mut swapped = good.clone();
        swapped.reverse();
        assert!(check_colorbar(&swapped, w, h, 3 * w).is_err());
        assert!(check_colorbar(&good[..good.len() - 1], w, h, 3 * w).is_err());
    }
}
