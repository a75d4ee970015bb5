//! The recorder: protocol v1 media frames of one call → `call.wav.part` (16-bit PCM, hound).
//!
//! Mono or stereo is decided from the first second of audio: both `inbound` and `outbound`
//! frames → stereo (left customer, right agent); `mixed`, or one track alone for a second →
//! mono. A `seq` gap is filled with silence and counted. The header is made valid every second
//! and the file synced every five, so a crash leaves a playable file.
//!
//! Silence filling is bounded by real time: a gap is filled only as far as the wall-clock time
//! since the track's previous frame allows, and never takes a track beyond the time the stream
//! has really run plus [`JITTER_ALLOWANCE`]. A `seq` that jumps further forward than that (a PBX
//! putting RTP timestamps in `seq`, garbage) or far backwards (a restarted numbering) is counted
//! and reported once in the manifest's `problems`, never written as silence.

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
/// How far a track's audio (with its filled gaps) may run ahead of the wall-clock time the
/// stream has really run: network jitter and a PBX's send buffer.
pub const JITTER_ALLOWANCE: Duration = Duration::from_secs(2);
/// A frame this many frames behind the expected `seq` is a late (reordered or repeated) frame;
/// further back, the PBX restarted its numbering.
const REORDER_WINDOW: u64 = 50;

/// Where the recorder takes the time from (the real clock, or a test's).
pub type Clock = Box<dyn Fn() -> Instant + Send>;

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
    /// Samples taken so far (audio and filled silence, written or queued).
    total: u64,
    /// When the track's previous frame came.
    last_at: Option<Instant>,
}

/// The first of a kind of `seq` jump, and how many there were.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Jumps {
    count: u64,
    first: Option<(u64, u64)>,
}

impl Jumps {
    fn add(&mut self, from: u64, to: u64) -> bool {
        self.count += 1;
        self.first.get_or_insert((from, to));
        self.count == 1
    }

    /// `once (from 7 to 9000)`, `3 times (first from 7 to 9000)`.
    fn describe(&self) -> Option<String> {
        let (from, to) = self.first?;
        Some(match self.count {
            1 => format!("once (from {from} to {to})"),
            n => format!("{n} times (first from {from} to {to})"),
        })
    }
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
    /// Samples of silence for `seq` gaps that were not written: more than real time allowed.
    pub unfilled_samples: u64,
    /// Wall-clock time from the first frame to the last.
    pub stream_secs: f64,
    /// What went wrong with the stream, once each, for the manifest's `problems`.
    pub problems: Vec<String>,
    /// Sample frames not written because the file reached [`MAX_WAV_DATA`].
    pub cut_frames: u64,
    forward_jumps: Jumps,
    backward_jumps: Jumps,
}

/// Most bytes of audio one WAV file holds: its sizes are 32-bit, so past about 4 GiB the header
/// would lie (and the WAV writer's own count would overflow). 64 KiB under the format's limit
/// leave room for the header.
pub const MAX_WAV_DATA: u64 = u32::MAX as u64 - 64 * 1024;

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
    clock: Clock,
    /// When the first frame came.
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    /// Audio bytes in the file so far, and the most it may take ([`MAX_WAV_DATA`]).
    data_bytes: u64,
    max_data_bytes: u64,
}

fn track_name(track: Track) -> &'static str {
    match track {
        Track::Inbound => "inbound",
        Track::Outbound => "outbound",
        Track::Mixed => "mixed",
    }
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
        Recorder::with_clock(path, encoding, sample_rate, Box::new(Instant::now))
    }

    /// The same, with the time taken from `clock`.
    pub fn with_clock(
        path: PathBuf,
        encoding: Encoding,
        sample_rate: u32,
        clock: Clock,
    ) -> Recorder {
        let now = clock();
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
            clock,
            first_at: None,
            last_at: None,
            data_bytes: 0,
            max_data_bytes: MAX_WAV_DATA,
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
        let now = (self.clock)();
        let first = *self.first_at.get_or_insert(now);
        self.last_at = Some(now);
        let rate = u64::from(self.rate);
        let samples_in = |d: Duration| (d.as_secs_f64() * rate as f64) as u64;
        // What this track may hold by now: the stream's real time plus the allowance.
        let budget = samples_in(now.saturating_duration_since(first) + JITTER_ALLOWANCE);
        let payload_samples = match self.encoding {
            Encoding::Mulaw | Encoding::Alaw => payload.len() as u64,
            Encoding::L16 => payload.len() as u64 / 2,
        };
        let name = track_name(track);
        let t = &mut self.tracks[i];
        t.seen = true;
        let since_last = t.last_at.map(|at| now.saturating_duration_since(at));
        t.last_at = Some(now);
        if seq != 0 {
            if let Some(expected) = t.expected {
                if seq < expected && expected - seq <= REORDER_WINDOW {
                    self.stats.late_frames += 1;
                    return Ok(());
                }
                if seq < expected {
                    if self.stats.backward_jumps.add(expected - 1, seq) {
                        tracing::warn!(path = %self.path.display(), track = name, from = expected - 1, to = seq,
                            "media seq jumped backwards: taken as a restart of the numbering");
                    }
                } else if seq > expected {
                    let missing = seq - expected;
                    let want = missing.saturating_mul(t.last_len as u64);
                    // Frames cannot have gone missing for longer than the time that passed.
                    let passed = since_last.unwrap_or_default() + JITTER_ALLOWANCE;
                    let absurd = want > samples_in(passed).min(rate * MAX_GAP_SECS);
                    if absurd {
                        if self.stats.forward_jumps.add(expected - 1, seq) {
                            tracing::warn!(path = %self.path.display(), track = name, from = expected - 1, to = seq,
                                "media seq jumped further forward than the time that passed: not filled");
                        }
                    } else {
                        let room = budget.saturating_sub(t.total + payload_samples);
                        let fill = want.min(room);
                        self.stats.gaps += missing;
                        self.stats.unfilled_samples += want - fill;
                        t.queue.extend(std::iter::repeat_n(0i16, fill as usize));
                        t.total += fill;
                    }
                }
            }
            t.expected = Some(seq.saturating_add(1));
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
        t.total += t.last_len as u64;
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
        let block = if self.channels == Channels::Stereo {
            4
        } else {
            2
        };
        // Frames the file still has room for: past that they are counted, never written.
        let room = usize::try_from(self.max_data_bytes.saturating_sub(self.data_bytes) / block)
            .unwrap_or(usize::MAX);
        match self.channels {
            Channels::Undecided => {}
            Channels::Mono(m) => {
                let q = &mut self.tracks[m].queue;
                let take = q.len().min(room);
                self.stats.frames_written += take as u64;
                self.stats.cut_frames += (q.len() - take) as u64;
                self.data_bytes += take as u64 * block;
                for s in q.drain(..take) {
                    w.write_sample(s).map_err(write_err(path))?;
                }
                q.clear();
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
                let take = n.min(room);
                self.stats.frames_written += take as u64;
                self.stats.cut_frames += (n - take) as u64;
                self.data_bytes += take as u64 * block;
                for (l, r) in a.queue.drain(..n).zip(b.queue.drain(..n)).take(take) {
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
        self.summarize();
        Ok(self.stats)
    }

    /// The stream's problems, once each, with their counts.
    fn summarize(&mut self) {
        let secs = |samples: u64| samples as f64 / f64::from(self.rate);
        let stream = match (self.first_at, self.last_at) {
            (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let st = &mut self.stats;
        st.stream_secs = stream;
        if let Some(when) = st.forward_jumps.describe() {
            st.problems.push(format!(
                "the PBX's frame numbers (seq) jumped further forward than the time that had passed {when}; those jumps are not filled with silence"
            ));
        }
        if let Some(when) = st.backward_jumps.describe() {
            st.problems.push(format!(
                "the PBX's frame numbers (seq) jumped backwards {when}; taken as a restart of the numbering"
            ));
        }
        if st.unfilled_samples > 0 {
            st.problems.push(format!(
                "{:.1} s of silence for missing frames is not in the file: the gaps add up to more than the stream's real time ({stream:.1} s, plus {} s allowance)",
                secs(st.unfilled_samples),
                JITTER_ALLOWANCE.as_secs()
            ));
        }
        if st.cut_frames > 0 {
            st.problems.push(format!(
                "the recording reached the WAV format's size limit (about 4 GiB) after {:.1} s of audio; the last {:.1} s the PBX sent are not in the file",
                secs(st.frames_written),
                secs(st.cut_frames)
            ));
        }
        let most = self.tracks.iter().map(|t| t.total).max().unwrap_or(0);
        let limit = stream + JITTER_ALLOWANCE.as_secs_f64();
        if secs(most) > limit {
            st.problems.push(format!(
                "the PBX sent {:.1} s of audio in {stream:.1} s of real time; it is all kept",
                secs(most)
            ));
        }
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
        self.summarize();
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A clock the test moves by hand.
    fn manual_clock() -> (Clock, Arc<Mutex<Instant>>) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let read = now.clone();
        (Box::new(move || *read.lock().unwrap()), now)
    }

    fn advance(now: &Arc<Mutex<Instant>>, d: Duration) {
        *now.lock().unwrap() += d;
    }

    fn audio_secs(path: &Path) -> f64 {
        let r = hound::WavReader::open(path).unwrap();
        f64::from(r.duration()) / f64::from(r.spec().sample_rate)
    }

    /// Pushes `frames` frames 20 ms apart (by the clock); returns the stats and the real time.
    fn stream(
        enc: Encoding,
        rate: u32,
        frames: u64,
        seq: impl Fn(u64) -> u64,
        payload: &[u8],
    ) -> (RecordStats, f64, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("call.wav.part");
        let (clock, now) = manual_clock();
        let mut r = Recorder::with_clock(path.clone(), enc, rate, clock);
        for i in 0..frames {
            if i > 0 {
                advance(&now, Duration::from_millis(20));
            }
            r.push(Track::Mixed, seq(i), payload).unwrap();
        }
        let stats = r.finish().unwrap();
        let secs = audio_secs(&path);
        (stats, secs, tmp)
    }

    #[test]
    fn a_recording_stops_at_the_wav_size_limit_with_a_valid_header_and_says_so() {
        for (track, stereo) in [(Track::Mixed, false), (Track::Inbound, true)] {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("call.wav.part");
            let (clock, now) = manual_clock();
            let mut r = Recorder::with_clock(path.clone(), Encoding::Mulaw, 8000, clock);
            // The limit of a 4 GiB file, scaled down: 1 s of 8 kHz 16-bit audio per channel.
            let channels = if stereo { 2 } else { 1 };
            r.max_data_bytes = 16_000 * channels;
            for i in 0..150u64 {
                if i > 0 {
                    advance(&now, Duration::from_millis(20));
                }
                r.push(track, i + 1, &[0xff; 160]).unwrap();
                if stereo {
                    r.push(Track::Outbound, i + 1, &[0xff; 160]).unwrap();
                }
            }
            let stats = r.finish().unwrap();
            assert_eq!(stats.frames_written, 8000, "stereo {stereo}");
            assert_eq!(stats.cut_frames, 16_000, "stereo {stereo}");
            assert!((audio_secs(&path) - 1.0).abs() < 1e-9, "the header holds");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                44 + 16_000 * channels,
                "nothing written past the limit"
            );
            assert!(
                stats.problems.iter().any(|p| p.contains("size limit")
                    && p.contains("after 1.0 s")
                    && p.contains("last 2.0 s")),
                "{:?}",
                stats.problems
            );
        }
    }

    #[test]
    fn rtp_timestamps_in_seq_do_not_fill_the_disk_with_silence() {
        // 50 frames of 20 ms μ-law (1 s) whose seq grows by 160 a frame.
        let (stats, secs, _tmp) = stream(Encoding::Mulaw, 8000, 50, |i| 1 + 160 * i, &[0xff; 160]);
        assert!(secs <= stats.stream_secs + 2.0, "{secs} s of audio");
        assert_eq!(stats.frames_written, 50 * 160);
        assert_eq!(stats.gaps, 0);
        assert_eq!(stats.problems.len(), 1, "{:?}", stats.problems);
        assert!(
            stats.problems[0].contains("jumped further forward")
                && stats.problems[0].contains("49 times"),
            "{:?}",
            stats.problems
        );
    }

    #[test]
    fn l16_192khz_with_huge_seq_steps_and_odd_payloads_stays_within_real_time() {
        let (stats, secs, _tmp) =
            stream(Encoding::L16, 192_000, 4, |i| 1 + i * 1_000_000, &[1, 2, 3]);
        assert!(secs <= stats.stream_secs + 2.0, "{secs} s of audio");
        assert!(stats.frames_written < 10, "{stats:?}");
        assert!(
            stats.problems.iter().any(|p| p.contains("3 times")),
            "{:?}",
            stats.problems
        );
    }

    #[test]
    fn gaps_are_filled_only_as_far_as_real_time_allows() {
        // Every other frame missing, 20 ms apart: each gap alone is plausible, together they
        // would make twice the real time.
        let (stats, secs, _tmp) = stream(Encoding::Mulaw, 8000, 500, |i| 1 + 2 * i, &[0xff; 160]);
        let real = stats.stream_secs;
        assert!((9.9..10.0).contains(&real), "{real}");
        assert!(secs <= real + 2.0 + 0.02, "{secs} s of audio for {real} s");
        assert!(secs >= real, "{secs} s of audio for {real} s");
        assert_eq!(stats.gaps, 499);
        assert!(stats.unfilled_samples > 0);
        assert!(
            stats
                .problems
                .iter()
                .any(|p| p.contains("silence for missing frames is not in the file")),
            "{:?}",
            stats.problems
        );
    }

    #[test]
    fn a_real_outage_is_filled_with_silence() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("call.wav.part");
        let (clock, now) = manual_clock();
        let mut r = Recorder::with_clock(path.clone(), Encoding::Mulaw, 8000, clock);
        for seq in 1..=50 {
            r.push(Track::Mixed, seq, &[0x7f; 160]).unwrap();
            advance(&now, Duration::from_millis(20));
        }
        // One second of frames lost on the way; the next frame comes a second later.
        advance(&now, Duration::from_secs(1));
        for seq in 101..=150 {
            r.push(Track::Mixed, seq, &[0x7f; 160]).unwrap();
            advance(&now, Duration::from_millis(20));
        }
        let stats = r.finish().unwrap();
        assert_eq!(stats.gaps, 50);
        assert_eq!(stats.unfilled_samples, 0);
        assert!(stats.problems.is_empty(), "{:?}", stats.problems);
        assert_eq!(stats.frames_written, 150 * 160);
    }

    #[test]
    fn a_restarted_numbering_is_a_problem_once_and_its_audio_is_kept() {
        let (stats, _secs, _tmp) =
            stream(Encoding::Mulaw, 8000, 200, |i| 1 + (i % 100), &[0x7f; 160]);
        assert_eq!(stats.frames_written, 200 * 160);
        assert_eq!(stats.late_frames, 0);
        assert_eq!(stats.problems.len(), 1, "{:?}", stats.problems);
        assert!(
            stats.problems[0].contains("jumped backwards once (from 100 to 1)"),
            "{:?}",
            stats.problems
        );
    }
}
