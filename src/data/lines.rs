//! Streaming line splitting with Python's universal-newline rules.
//!
//! The reference reads annotation files in text mode, where `\n`, `\r\n` and a lone `\r` all end a
//! line, and numbers lines from 0. Selection quotas, tie order and the line numbers in error
//! messages all depend on that numbering, so it is reproduced here on raw bytes, one buffer at a
//! time, without ever holding a whole file.

use std::io::{self, Read};

/// One physical line (terminator removed).
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// 0-based physical line number.
    pub index: u64,
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// The line's bytes, without `\n`, `\r\n` or `\r`.
    pub bytes: &'a [u8],
}

/// Splits a byte stream into lines; memory stays at one buffer plus the longest line.
pub struct LineSplitter<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// File offset of `buf[0]`.
    base: u64,
    next_index: u64,
}

impl<R: Read> LineSplitter<R> {
    /// Wraps a reader.
    pub fn new(reader: R) -> Self {
        LineSplitter {
            reader,
            buf: vec![0; 1 << 20],
            start: 0,
            end: 0,
            eof: false,
            base: 0,
            next_index: 0,
        }
    }

    /// The next line, or `None` at the end of the stream.
    #[allow(clippy::should_implement_trait)] // lending iterator: the line borrows the buffer
    pub fn next(&mut self) -> io::Result<Option<Line<'_>>> {
        loop {
            let hay = &self.buf[self.start..self.end];
            match memchr::memchr2(b'\n', b'\r', hay) {
                Some(p) => {
                    let abs = self.start + p;
                    let term = if self.buf[abs] == b'\r' {
                        if abs + 1 == self.end && !self.eof {
                            // A `\r` at the buffer's edge may be the first half of `\r\n`.
                            self.fill()?;
                            continue;
                        }
                        if abs + 1 < self.end && self.buf[abs + 1] == b'\n' {
                            2
                        } else {
                            1
                        }
                    } else {
                        1
                    };
                    let line_start = self.start;
                    self.start = abs + term;
                    return Ok(Some(self.emit(line_start, abs)));
                }
                None if self.eof => {
                    if self.start == self.end {
                        return Ok(None);
                    }
                    let (s, e) = (self.start, self.end);
                    self.start = self.end;
                    return Ok(Some(self.emit(s, e)));
                }
                None => self.fill()?,
            }
        }
    }

    fn emit(&mut self, start: usize, end: usize) -> Line<'_> {
        let index = self.next_index;
        self.next_index += 1;
        Line {
            index,
            offset: self.base + start as u64,
            bytes: &self.buf[start..end],
        }
    }

    /// Moves the unread tail to the front and reads more, growing the buffer for long lines.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(data: &[u8], buf: usize) -> Vec<(u64, u64, Vec<u8>)> {
        let mut s = LineSplitter::new(data);
        s.buf = vec![0; buf];
        let mut out = Vec::new();
        while let Some(l) = s.next().unwrap() {
            out.push((l.index, l.offset, l.bytes.to_vec()));
        }
        out
    }

    #[test]
    fn universal_newlines_at_every_buffer_size() {
        let data = b"a\nbb\r\nccc\rdd\r\r\ne";
        let want: Vec<(u64, u64, Vec<u8>)> = vec![
            (0, 0, b"a".to_vec()),
            (1, 2, b"bb".to_vec()),
            (2, 6, b"ccc".to_vec()),
            (3, 10, b"dd".to_vec()),
            (4, 13, b"".to_vec()),
            (5, 15, b"e".to_vec()),
        ];
        for buf in 1..24 {
            assert_eq!(split(data, buf), want, "buffer of {buf}");
        }
    }

    #[test]
    fn trailing_terminators_do_not_add_lines() {
        assert_eq!(split(b"x\n", 4).len(), 1);
        assert_eq!(split(b"x\r", 4).len(), 1);
        assert_eq!(split(b"x\r\n", 2).len(), 1);
        assert_eq!(split(b"", 4).len(), 0);
        assert_eq!(split(b"\n", 4).len(), 1);
    }
}
