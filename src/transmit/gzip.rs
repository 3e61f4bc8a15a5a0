//! A gzip stream with zlib's full set of parameters: the only `unsafe` code of the crate.
//!
//! Span bodies compress best for the CPU with a parameter no safe API offers: zlib's
//! `deflateTune` (see [`SPAN_GZIP_LEVEL`](super::encode::SPAN_GZIP_LEVEL) for the figures).
//! Neither `flate2` nor zlib-rs' safe API (`zlib_rs::stable`) exposes it, so this module
//! drives zlib-rs, the same engine `flate2` runs on here, through its zlib-compatible C API
//! (`libz-rs-sys`, called as plain Rust functions; no symbol is exported or linked).
//!
//! The unsafe surface is small and follows zlib's documented contract:
//! - the `z_stream` is boxed, so it never moves after `deflateInit2_` (zlib's state points back
//!   to it), and it is ended exactly once, in `Drop`;
//! - before every `deflate` call the input and output pointers are set to a live slice and to
//!   the spare capacity of a live `Vec`, with lengths that fit in zlib's `uInt`; zlib reads at
//!   most `avail_in` bytes and writes at most `avail_out`, and reports how many through them;
//! - the output `Vec`'s length is raised by exactly the number of bytes zlib wrote.
//!
//! Nothing else in the crate may use `unsafe` (`unsafe_code = "deny"` in `Cargo.toml`; this
//! module is the one exception).
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::io;

use libz_rs_sys::{
    deflate, deflateEnd, deflateInit2_, deflateReset, deflateTune, z_stream, zlibVersion,
    Z_BUF_ERROR, Z_DEFAULT_STRATEGY, Z_DEFLATED, Z_FINISH, Z_NO_FLUSH, Z_OK, Z_STREAM_END,
};

/// zlib's `windowBits` for a gzip stream with the largest window (15, plus 16 for the gzip
/// header and trailer).
const GZIP_WINDOW_BITS: c_int = 15 + 16;

/// zlib's default `memLevel`.
const MEM_LEVEL: c_int = 8;

/// zlib's `deflateTune` parameters: they replace the level's row of zlib's configuration
/// table (`good_length`, `max_lazy`, `nice_length`, `max_chain`), keeping its strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tune {
    /// Above a match this long, search lazy matches less.
    pub(crate) good: u16,
    /// Above a match this long, do not look for a lazy match.
    pub(crate) lazy: u16,
    /// Stop searching once a match this long is found.
    pub(crate) nice: u16,
    /// Look at most this many earlier positions for a match.
    pub(crate) chain: u16,
}

/// How request bodies are compressed: a zlib level (0 = store, 9 = smallest), tuned or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Level {
    level: u8,
    tune: Option<Tune>,
}

impl Level {
    /// zlib's level `level` (at most 9).
    pub(crate) const fn new(level: u8) -> Self {
        Level {
            level: if level > 9 { 9 } else { level },
            tune: None,
        }
    }

    /// zlib's level `level` with its parameters replaced by `tune`.
    pub(crate) const fn tuned(level: u8, tune: Tune) -> Self {
        Level {
            tune: Some(tune),
            ..Level::new(level)
        }
    }
}

/// A reusable gzip compressor (its state is a few hundred KiB, allocated once).
pub(crate) struct Stream {
    strm: Box<z_stream>,
    level: Level,
}

// SAFETY: the stream exclusively owns the state zlib allocated for it and is only used through
// `&mut self`; its raw pointers are set before each call and not used between calls, and zlib's
// state has no tie to the thread that created it.
unsafe impl Send for Stream {}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

fn error(call: &str, code: c_int) -> io::Error {
    io::Error::other(format!("zlib's {call} failed with code {code}"))
}

impl Stream {
    /// A compressor at `level`.
    ///
    /// # Errors
    ///
    /// If zlib cannot allocate its state.
    pub(crate) fn new(level: Level) -> io::Result<Self> {
        let mut strm = Box::new(z_stream::default());
        let size = c_int::try_from(std::mem::size_of::<z_stream>()).unwrap_or(c_int::MAX);
        // SAFETY: `strm` is a zeroed `z_stream` (no allocator: zlib-rs' own) at a stable heap
        // address; the version string is zlib-rs' own, NUL-terminated and static.
        let rc = unsafe {
            deflateInit2_(
                &mut *strm,
                c_int::from(level.level),
                Z_DEFLATED,
                GZIP_WINDOW_BITS,
                MEM_LEVEL,
                Z_DEFAULT_STRATEGY,
                zlibVersion(),
                size,
            )
        };
        if rc != Z_OK {
            // Nothing was allocated when the initialisation failed.
            return Err(error("deflateInit2", rc));
        }
        let mut stream = Stream { strm, level };
        stream.begin()?;
        Ok(stream)
    }

    /// Starts a new gzip member: forgets the previous input and applies the tuning again
    /// (zlib's reset restores the level's parameters).
    ///
    /// # Errors
    ///
    /// Only if zlib refuses its own stream, which does not happen.
    pub(crate) fn begin(&mut self) -> io::Result<()> {
        // SAFETY: the stream was initialised by `deflateInit2_` and not ended.
        let rc = unsafe { deflateReset(&mut *self.strm) };
        if rc != Z_OK {
            return Err(error("deflateReset", rc));
        }
        if let Some(t) = self.level.tune {
            // SAFETY: as above.
            let rc = unsafe {
                deflateTune(
                    &mut *self.strm,
                    c_int::from(t.good),
                    c_int::from(t.lazy),
                    c_int::from(t.nice),
                    c_int::from(t.chain),
                )
            };
            if rc != Z_OK {
                return Err(error("deflateTune", rc));
            }
        }
        Ok(())
    }

    /// Compresses `input`, appending the output to `out` (grown as needed). With `finish`,
    /// ends the gzip member (the trailer is written); [`begin`](Self::begin) starts the next.
    ///
    /// # Errors
    ///
    /// Only if zlib reports an error, which does not happen with a stream used this way.
    pub(crate) fn write(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        finish: bool,
    ) -> io::Result<()> {
        let mut input = input;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(4096));
            }
            let spare = out.spare_capacity_mut();
            let avail_out = u32::try_from(spare.len()).unwrap_or(u32::MAX);
            let avail_in = u32::try_from(input.len()).unwrap_or(u32::MAX);
            // The last call with the last of the input finishes the member.
            let flush = if finish && avail_in as usize == input.len() {
                Z_FINISH
            } else {
                Z_NO_FLUSH
            };
            self.strm.next_in = input.as_ptr().cast_mut();
            self.strm.avail_in = avail_in;
            self.strm.next_out = spare.as_mut_ptr().cast();
            self.strm.avail_out = avail_out;
            // SAFETY: the stream is initialised; `next_in` points to `avail_in` readable bytes
            // of `input` (zlib only reads through it) and `next_out` to `avail_out` writable
            // bytes of `out`'s spare capacity, both alive for the call.
            let rc = unsafe { deflate(&mut *self.strm, flush) };
            // zlib only lowers the counts; the clamps keep a broken promise from turning into
            // an out-of-bounds length below.
            let consumed = (avail_in.saturating_sub(self.strm.avail_in) as usize).min(input.len());
            let written = avail_out.saturating_sub(self.strm.avail_out) as usize;
            self.strm.next_in = std::ptr::null_mut();
            self.strm.next_out = std::ptr::null_mut();
            // SAFETY: zlib wrote `written` bytes at the start of the spare capacity, and
            // `written <= avail_out <= spare capacity` keeps the new length within it.
            unsafe { out.set_len(out.len() + written) };
            input = input.get(consumed..).unwrap_or_default();
            match rc {
                Z_STREAM_END => return Ok(()),
                Z_OK | Z_BUF_ERROR => {
                    if !finish && input.is_empty() {
                        return Ok(());
                    }
                    if consumed == 0 && written == 0 && out.len() < out.capacity() {
                        return Err(io::Error::other("gzip made no progress"));
                    }
                }
                other => return Err(error("deflate", other)),
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised and is ended only here, once.
        unsafe {
            deflateEnd(&mut *self.strm);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(gzip: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let read = flate2::read::GzDecoder::new(gzip).read_to_end(&mut out);
        assert!(read.is_ok(), "not valid gzip: {read:?}");
        out
    }

    /// Telemetry-like input: a long constant head, then varying text.
    fn sample(n: usize) -> Vec<u8> {
        let mut json = Vec::new();
        for i in 0..n {
            json.extend_from_slice(
                format!(
                    "{{\"name\":\"Microsoft.ApplicationInsights.Request\",\"tags\":{{\"ai.cloud.role\":\"shop\",\"ai.operation.id\":\"{:032x}\"}},\"data\":{{\"id\":{i},\"url\":\"/orders/{}\"}}}},",
                    (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834),
                    i * 7
                )
                .as_bytes(),
            );
        }
        json
    }

    #[test]
    fn every_level_and_the_tuning_round_trip_and_a_stream_is_reused() {
        let input = sample(2000);
        let tuned = Level::tuned(
            4,
            Tune {
                good: 4,
                lazy: 6,
                nice: 64,
                chain: 8,
            },
        );
        for level in (0..=9).map(Level::new).chain([tuned]) {
            let stream = Stream::new(level);
            assert!(stream.is_ok(), "{level:?}: {stream:?}");
            let Ok(mut stream) = stream else { return };
            for round in 0..3 {
                let mut out = Vec::with_capacity(16);
                assert!(stream.begin().is_ok());
                // In pieces, as request bodies are written, then finished with no input left.
                for piece in input.chunks(10_000) {
                    assert!(stream.write(piece, &mut out, false).is_ok());
                }
                assert!(stream.write(b"", &mut out, true).is_ok());
                assert_eq!(gunzip(&out), input, "{level:?}, round {round}");
            }
        }
    }

    #[test]
    fn the_tuning_is_applied_again_after_each_reset() {
        let input = sample(3000);
        let body = |level: Level| {
            let mut stream = Stream::new(level).ok()?;
            let mut sizes = Vec::new();
            for _ in 0..2 {
                let mut out = Vec::new();
                stream.begin().ok()?;
                stream.write(&input, &mut out, true).ok()?;
                sizes.push(out.len());
            }
            Some(sizes)
        };
        // A tuning that changes the output: no lazy matching, the shortest search.
        let tune = Tune {
            good: 4,
            lazy: 4,
            nice: 8,
            chain: 1,
        };
        let plain = body(Level::new(6));
        let tuned = body(Level::tuned(6, tune));
        assert!(plain.is_some() && tuned.is_some());
        let (Some(plain), Some(tuned)) = (plain, tuned) else {
            return;
        };
        assert_ne!(plain[0], tuned[0], "the tuning changes the output");
        assert_eq!(tuned[0], tuned[1], "the second body is tuned as the first");
    }

    #[test]
    fn output_grows_from_an_empty_vec_and_appends() {
        let input = sample(500);
        let Ok(mut stream) = Stream::new(Level::new(1)) else {
            panic!("a stream at level 1")
        };
        let mut out = b"kept".to_vec();
        out.shrink_to_fit();
        assert!(stream.write(&input, &mut out, true).is_ok());
        assert_eq!(out.get(..4), Some(&b"kept"[..]));
        assert_eq!(gunzip(out.get(4..).unwrap_or_default()), input);
    }
}
