//! Where the JSON lines go: stdout or a rotating file, both buffered line by line so that a
//! failed write knows exactly how many lines it lost (the numbering needs the count).

use std::io::{self, Write};

use crate::rotate::{FlushError, LogFile};

const STDOUT_BUFFER: usize = 1 << 16;

pub(crate) enum Destination {
    Stdout(StdoutLines),
    File(LogFile),
}

impl Destination {
    /// Room for `len` bytes: the next pushes of up to `len` bytes do not write.
    /// Returns the lines written meanwhile.
    pub(crate) fn prepare(&mut self, len: usize) -> Result<u64, FlushError> {
        match self {
            Destination::Stdout(s) => s.prepare(len),
            Destination::File(f) => f.prepare(len),
        }
    }

    pub(crate) fn push(&mut self, line: &[u8]) {
        match self {
            Destination::Stdout(s) => s.push(line),
            Destination::File(f) => f.push(line),
        }
    }

    /// Writes what is buffered: the lines written, or the lines lost.
    pub(crate) fn flush(&mut self) -> Result<u64, FlushError> {
        match self {
            Destination::Stdout(s) => s.flush(),
            Destination::File(f) => f.flush(),
        }
    }
}

/// Lines for stdout. Unlike `BufWriter`, a failed write tells how many whole lines got out
/// before the error, so the lost ones are counted exactly.
pub(crate) struct StdoutLines {
    buf: Vec<u8>,
    lines: u64,
}

impl StdoutLines {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::with_capacity(STDOUT_BUFFER),
            lines: 0,
        }
    }

    fn prepare(&mut self, len: usize) -> Result<u64, FlushError> {
        if !self.buf.is_empty() && self.buf.len() + len > STDOUT_BUFFER {
            self.flush()
        } else {
            Ok(0)
        }
    }

    fn push(&mut self, line: &[u8]) {
        self.buf.extend_from_slice(line);
        self.lines += 1;
    }

    fn flush(&mut self) -> Result<u64, FlushError> {
        let lines = std::mem::take(&mut self.lines);
        let mut out = io::stdout().lock();
        let result = write_counted(&mut out, &self.buf)
            .and_then(|n| out.flush().map(|()| n).map_err(|e| (n, e)));
        let written = match &result {
            Ok(_) => self.buf.len(),
            Err((n, _)) => *n,
        };
        let delivered = self.buf[..written].iter().filter(|&&b| b == b'\n').count() as u64;
        self.buf.clear();
        match result {
            Ok(_) => Ok(lines),
            Err((_, error)) => Err(FlushError {
                error,
                lines: lines - delivered.min(lines),
                delivered: delivered.min(lines),
            }),
        }
    }
}

/// `write_all` that reports how many bytes went out before an error.
fn write_counted(w: &mut impl Write, mut buf: &[u8]) -> Result<usize, (usize, io::Error)> {
    let mut done = 0;
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                done += n;
                buf = &buf[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(done)
}
