//! Layer compression. Reading sniffs the format from the first bytes (plain tar, gzip, zstd).
//! Writing uses pinned settings so the same tar always compresses to the same bytes: gzip at
//! level 6 with no name, mtime 0 and OS "unknown" in the header; zstd at level 3, one thread,
//! with a content checksum. (The compressor libraries are pinned by Cargo.lock.)

use std::io::{self, BufRead, BufReader, Read, Write};

pub use crate::oci::Compression;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// A reader that yields the uncompressed tar of `r`, whatever its compression.
pub fn decompressing<'a, R: Read + 'a>(r: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut r = BufReader::with_capacity(1 << 20, r);
    let head = r.fill_buf()?;
    if head.starts_with(GZIP_MAGIC) {
        Ok((
            Compression::Gzip,
            Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        ))
    } else if head.starts_with(ZSTD_MAGIC) {
        Ok((
            Compression::Zstd,
            Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        ))
    } else {
        Ok((Compression::None, Box::new(r)))
    }
}

/// A compressing writer; call [`Compressor::finish`] to flush the trailer.
pub enum Compressor<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    pub fn new(kind: Compression, w: W) -> io::Result<Self> {
        Ok(match kind {
            Compression::None => Compressor::None(w),
            Compression::Gzip => Compressor::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(w, flate2::Compression::new(6)),
            ),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, 3)?;
                e.include_checksum(true)?;
                Compressor::Zstd(e)
            }
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(kind: Compression, data: &[u8]) -> Vec<u8> {
        let mut c = Compressor::new(kind, Vec::new()).unwrap();
        c.write_all(data).unwrap();
        c.finish().unwrap()
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for kind in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let a = compress(kind, &data);
            assert_eq!(a, compress(kind, &data), "{kind:?} is deterministic");
            let (found, mut r) = decompressing(&a[..]).unwrap();
            assert_eq!(found, kind);
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
        // No name and no mtime in the gzip header.
        let gz = compress(Compression::Gzip, b"x");
        assert_eq!(&gz[3..10], &[0, 0, 0, 0, 0, 0, 255][..]);
    }
}
