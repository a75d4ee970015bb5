//! Reading and repairing WAV headers: finding the sample data, and fixing the RIFF and `data`
//! sizes from the file length after a crash or a full disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Where the samples are and how they are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the first sample byte.
    pub data_offset: u64,
    /// Bytes of the `data` chunk according to its header.
    pub data_len: u32,
    /// Channels.
    pub channels: u16,
    /// Samples per second.
    pub sample_rate: u32,
    /// Bytes per frame (all channels).
    pub block_align: u16,
    /// Bits per sample.
    pub bits: u16,
    /// WAVE format tag (1 = PCM, 0xFFFE = extensible).
    pub format: u16,
}

/// Reads the RIFF chunks up to `data`.
pub fn read_layout(f: &mut File) -> io::Result<Layout> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    f.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 12];
    f.read_exact(&mut head)?;
    if &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let mut pos = 12u64;
    let mut fmt: Option<(u16, u16, u32, u16, u16)> = None;
    loop {
        let mut ch = [0u8; 8];
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut ch)?;
        let size = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]);
        let body = pos + 8;
        match &ch[0..4] {
            b"fmt " => {
                let mut b = [0u8; 16];
                f.read_exact(&mut b)?;
                fmt = Some((
                    u16::from_le_bytes([b[0], b[1]]),
                    u16::from_le_bytes([b[2], b[3]]),
                    u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                    u16::from_le_bytes([b[12], b[13]]),
                    u16::from_le_bytes([b[14], b[15]]),
                ));
            }
            b"data" => {
                let (format, channels, sample_rate, block_align, bits) =
                    fmt.ok_or_else(|| bad("`data` before `fmt `"))?;
                return Ok(Layout {
                    data_offset: body,
                    data_len: size,
                    channels,
                    sample_rate,
                    block_align,
                    bits,
                    format,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = body + u64::from(size) + u64::from(size & 1);
    }
}

/// Makes the header of a WAV cut short valid: the samples are what the file holds, cut to whole
/// frames. Returns the layout after the repair.
pub fn repair(path: &Path) -> io::Result<Layout> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut layout = read_layout(&mut f)?;
    let len = f.metadata()?.len();
    let align = u64::from(layout.block_align.max(1));
    let data = len.saturating_sub(layout.data_offset);
    let data = (data / align * align).min(u64::from(u32::MAX) - layout.data_offset);
    let total = layout.data_offset + data;
    if total < len {
        f.set_len(total)?;
    }
    f.seek(SeekFrom::Start(4))?;
    f.write_all(&((total - 8) as u32).to_le_bytes())?;
    f.seek(SeekFrom::Start(layout.data_offset - 4))?;
    f.write_all(&(data as u32).to_le_bytes())?;
    f.sync_all()?;
    layout.data_len = data as u32;
    Ok(layout)
}
