//! The recorder: protocol v1 media frames of one call → `call.wav.part` (16-bit PCM, hound).
//!
//! Mono or stereo is decided from the first second of audio: both `inbound` and `outbound`
//! frames → stereo (left customer, right agent); `mixed`, or one track alone for a second →
//! mono. A `seq` gap is filled with silence and counted. The header is made valid every second
//! and the file synced every five, so a crash leaves a playable file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::events::{Encoding, Track};
use crate::fsutil;

use super::g711::TABLES;

/// How often the header is rewritten (DESIGN: at least every 5 s).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often the file is synced to disk.
pub const SYNC_EVERY: Duration = Duration::from_secs(5);
/// Longest silence a single `seq` gap may insert (a jump beyond is counted, not filled).
const MAX_GAP_SECS: u64 = 60;
/// A track that lags the other by this much is padded with silence so the file keeps up.
const MAX_SKEW_SECS: usize = 2;

/// Why recording stopped.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Writing the file failed (disk full, I/O error).
    #[error("{}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl RecordError {
    /// Whether the disk is full.
    pub fn is_disk_full(&self) -> bool {
        let RecordError::Write { source, .. } = self;
        source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channels {
    Undecided,
    Mono(usize),
    Stereo,
}

#[derive(Default)]
struct TrackState {
    queue: VecDeque<i16>,
    expected: Option<u64>,
    last_len: usize,
    carry: Option<u8>,
    seen: bool,
}

/// What the recorder did, for the manifest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordStats {
    /// Channels in the file.
    pub channels: u16,
    /// Samples per second.
    pub sample_rate: u32,
    /// Frames missing from the stream, filled with silence.
    pub gaps: u64,
    /// Frames out of order or repeated, not written.
    pub late_frames: u64,
    /// Frames of a track the file has no channel for (a second track after mono was chosen).
    pub ignored_frames: u64,
    /// Sample frames written.
    pub frames_written: u64,
}

/// Records one call.
pub struct Recorder {
    path: PathBuf,
    encoding: Encoding,
    rate: u32,
    channels: Channels,
    tracks: [TrackState; 3],
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    sync_handle: Option<File>,
    stats: RecordStats,
    last_flush: Instant,
    last_sync: Instant,
}

fn index(track: Track) -> usize {
    match track {
        Track::Inbound => 0,
        Track::Outbound => 1,
        Track::Mixed => 2,
    }
}

fn write_err(path: &Path) -> impl Fn(hound::Error) -> RecordError + '_ {
    move |e| RecordError::Write {
        path: path.to_path_buf(),
        source: match e {
            hound::Error::IoError(e) => e,
            other => io::Error::other(other.to_string()),
        },
    }
}

impl Recorder {
    /// A recorder that will create `path` (never overwriting) once it knows mono or stereo.
    pub fn new(path: PathBuf, encoding: Encoding, sample_rate: u32) -> Recorder {
        let now = Instant::now();
        Recorder {
            path,
            encoding,
            rate: sample_rate.max(1),
            channels: Channels::Undecided,
            tracks: Default::default(),
            writer: None,
            sync_handle: None,
            stats: RecordStats {
                sample_rate: sample_rate.max(1),
                ..Default::default()
            },
            last_flush: now,
            last_sync: now,
        }
    }

    /// The stream's encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Counters so far.
    pub fn stats(&self) -> &RecordStats {
        &self.stats
    }

    /// Takes one media frame.
    pub fn push(&mut self, track: Track, seq: u64, payload: &[u8]) -> Result<(), RecordError> {
        let i = index(track);
        if let Channels::Mono(m) = self.channels
            && m != i
        {
            self.stats.ignored_frames += 1;
            return Ok(());
        }
        if self.channels == Channels::Stereo && i == 2 {
            self.stats.ignored_frames += 1;
            return Ok(());
        }
        let max_gap_samples = self.rate as usize * MAX_GAP_SECS as usize;
        let t = &mut self.tracks[i];
        t.seen = true;
        if seq != 0 {
            if let Some(expected) = t.expected {
                if seq < expected {
                    self.stats.late_frames += 1;
                    return Ok(());
                }
                if seq > expected {
                    let missing = seq - expected;
                    self.stats.gaps += missing;
                    let fill = (missing as usize)
                        .saturating_mul(t.last_len)
                        .min(max_gap_samples);
                    t.queue.extend(std::iter::repeat_n(0i16, fill));
                }
            }
            t.expected = Some(seq + 1);
        }
        let before = t.queue.len();
        match self.encoding {
            Encoding::Mulaw => t.queue.extend(payload.iter().map(|&b| TABLES.mulaw(b))),
            Encoding::Alaw => t.queue.extend(payload.iter().map(|&b| TABLES.alaw(b))),
            Encoding::L16 => {
                let mut bytes = payload;
                if let Some(lo) = t.carry.take()
                    && let Some((&hi, rest)) = bytes.split_first()
                {
                    t.queue.push_back(i16::from_le_bytes([lo, hi]));
                    bytes = rest;
                }
                let mut pairs = bytes.chunks_exact(2);
                t.queue
                    .extend((&mut pairs).map(|p| i16::from_le_bytes([p[0], p[1]])));
                t.carry = pairs.remainder().first().copied();
            }
        }
        t.last_len = t.queue.len() - before;
        if self.channels == Channels::Undecided {
            self.decide(false)?;
        }
        self.drain(false)?;
        self.tick()
    }

    /// Flushes the header when due; call it when no frames come too.
    pub fn tick(&mut self) -> Result<(), RecordError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            w.flush().map_err(write_err(&self.path))?;
            self.last_flush = Instant::now();
        }
        if self.last_sync.elapsed() >= SYNC_EVERY {
            if let Some(f) = &self.sync_handle {
                f.sync_data().map_err(|source| RecordError::Write {
                    path: self.path.clone(),
                    source,
                })?;
            }
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    fn decide(&mut self, at_end: bool) -> Result<(), RecordError> {
        let [inb, outb, mixed] = &self.tracks;
        let enough = self.rate as usize;
        let choice = if mixed.seen {
            Some(Channels::Mono(2))
        } else if inb.seen && outb.seen {
            Some(Channels::Stereo)
        } else if inb.queue.len() >= enough || (at_end && inb.seen) {
            Some(Channels::Mono(0))
        } else if outb.queue.len() >= enough || (at_end && outb.seen) {
            Some(Channels::Mono(1))
        } else if at_end {
            Some(Channels::Mono(0))
        } else {
            None
        };
        let Some(choice) = choice else {
            return Ok(());
        };
        self.channels = choice;
        let channels = if choice == Channels::Stereo { 2 } else { 1 };
        self.stats.channels = channels;
        let file =
            fsutil::create_new_private_file(&self.path).map_err(|source| RecordError::Write {
                path: self.path.clone(),
                source,
            })?;
        self.sync_handle = file.try_clone().ok();
        let spec = hound::WavSpec {
            channels,
            sample_rate: self.rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::new(BufWriter::with_capacity(64 * 1024, file), spec)
            .map_err(write_err(&self.path))?;
        self.writer = Some(writer);
        // Frames of the track that has no channel now are not recorded; count them.
        if let Channels::Mono(m) = choice {
            for (i, t) in self.tracks.iter_mut().enumerate() {
                if i != m && t.seen {
                    self.stats.ignored_frames += 1;
                    t.queue.clear();
                }
            }
        }
        Ok(())
    }

    fn drain(&mut self, at_end: bool) -> Result<(), RecordError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let path = &self.path;
        match self.channels {
            Channels::Undecided => {}
            Channels::Mono(m) => {
                let q = &mut self.tracks[m].queue;
                self.stats.frames_written += q.len() as u64;
                for s in q.drain(..) {
                    w.write_sample(s).map_err(write_err(path))?;
                }
            }
            Channels::Stereo => {
                let [a, b, _] = &mut self.tracks;
                let skew = self.rate as usize * MAX_SKEW_SECS;
                // A track that stopped streaming must not hold the other back for ever.
                if at_end || a.queue.len() > skew || b.queue.len() > skew {
                    let n = a.queue.len().max(b.queue.len());
                    a.queue.resize(n, 0);
                    b.queue.resize(n, 0);
                }
                let n = a.queue.len().min(b.queue.len());
                self.stats.frames_written += n as u64;
                for (l, r) in a.queue.drain(..n).zip(b.queue.drain(..n)) {
                    w.write_sample(l).map_err(write_err(path))?;
                    w.write_sample(r).map_err(write_err(path))?;
                }
            }
        }
        Ok(())
    }

    /// Writes what is queued and finalizes the file (header valid, synced). Returns the
    /// counters; the file is at the path given to [`Recorder::new`].
    pub fn finish(mut self) -> Result<RecordStats, RecordError> {
        if self.channels == Channels::Undecided {
            self.decide(true)?;
        }
        self.drain(true)?;
        if let Some(w) = self.writer.take() {
            w.finalize().map_err(write_err(&self.path))?;
        }
        if let Some(f) = &self.sync_handle {
            f.sync_all().map_err(|source| RecordError::Write {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(self.stats)
    }

    /// Gives up after a write error: the writer is dropped and the header repaired from the
    /// file length, keeping every sample that reached the disk.
    pub fn abandon(mut self) -> RecordStats {
        // Dropping hound's writer tries a last flush; a failure there changes nothing we keep.
        drop(self.writer.take());
        if self.path.exists() {
            match super::wav::repair(&self.path) {
                Ok(l) => {
                    self.stats.frames_written =
                        u64::from(l.data_len) / u64::from(l.block_align.max(1));
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot repair the WAV header");
                }
            }
        }
        self.stats
    }
}
