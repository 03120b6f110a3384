//! How a command's answer reaches stdout: a table or `key: value` lines for people, the JSON
//! with `--json` for scripts. Written with `writeln!` to a locked stdout; a reader that goes
//! away (`tally polls list | head -1`) ends the output quietly, never the command with a
//! panic or an error: the command still exits with its own verdict.

use crate::table::{self, Table};
use anyhow::Context;
use std::io::{self, Write};

/// People's text or scripts' JSON (`--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

impl Format {
    pub fn new(json: bool) -> Self {
        match json {
            true => Self::Json,
            false => Self::Human,
        }
    }
}

/// One piece of people's text.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// A line as it is (control characters cleaned).
    Line(String),
    Table(Table),
    /// `key: value` lines, aligned.
    Fields(Vec<(String, String)>),
}

/// What a command prints: the same answer for people and for scripts.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub json: serde_json::Value,
    pub human: Vec<Block>,
}

impl Reply {
    pub fn new(json: serde_json::Value, human: impl IntoIterator<Item = Block>) -> Self {
        Self {
            json,
            human: human.into_iter().collect(),
        }
    }

    pub fn write_to(&self, format: Format, w: &mut impl Write) -> io::Result<()> {
        if format == Format::Json {
            return writeln!(w, "{}", serde_json::to_string_pretty(&self.json)?);
        }
        for block in &self.human {
            match block {
                Block::Line(line) => writeln!(w, "{}", table::clean(line))?,
                Block::Table(t) => t.write_to(w)?,
                Block::Fields(f) => table::write_fields(w, f)?,
            }
        }
        Ok(())
    }

    /// What people see, as text (for tests).
    #[cfg(test)]
    pub fn human_text(&self) -> String {
        let mut out = Vec::new();
        self.write_to(Format::Human, &mut out)
            .expect("writing to memory");
        String::from_utf8(out).expect("the table writer writes UTF-8")
    }
}

/// Prints `reply` on stdout. The lock is held only while writing (never across an `.await`).
pub fn print(format: Format, reply: &Reply) -> anyhow::Result<()> {
    let mut out = ClosedPipeOk::new(io::stdout().lock());
    reply
        .write_to(format, &mut out)
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// A writer for which a closed pipe is the reader's choice, not a failure: the first
/// `BrokenPipe` closes it and everything after is dropped as written. Other errors (a full
/// disk behind `> file`) still fail.
#[derive(Debug)]
pub struct ClosedPipeOk<W> {
    inner: W,
    closed: bool,
}

impl<W: Write> ClosedPipeOk<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            closed: false,
        }
    }

    /// Whether the reader has gone.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn absorb<T>(&mut self, result: io::Result<T>, dropped: T) -> io::Result<T> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(dropped)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for ClosedPipeOk<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let result = self.inner.write(buf);
        self.absorb(result, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let result = self.inner.flush();
        self.absorb(result, ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Takes `room` bytes, then fails every call with `kind`.
    struct Reader {
        taken: Vec<u8>,
        room: usize,
        kind: io::ErrorKind,
        calls_after: usize,
    }

    impl Reader {
        fn new(room: usize, kind: io::ErrorKind) -> Self {
            Self {
                taken: Vec::new(),
                room,
                kind,
                calls_after: 0,
            }
        }
    }

    impl Write for Reader {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken.len() >= self.room {
                self.calls_after += 1;
                return Err(self.kind.into());
            }
            let n = buf.len().min(self.room - self.taken.len());
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            match self.taken.len() >= self.room {
                true => Err(self.kind.into()),
                false => Ok(()),
            }
        }
    }

    fn listing(rows: usize) -> Reply {
        let mut t = Table::new(["id"]);
        (0..rows).for_each(|i| t.row([format!("poll-{i}")]));
        Reply::new(json!({"items": []}), [Block::Table(t)])
    }

    #[test]
    fn a_reader_that_goes_away_ends_the_output_not_the_command() {
        let mut out = ClosedPipeOk::new(Reader::new(12, io::ErrorKind::BrokenPipe));
        listing(1000).write_to(Format::Human, &mut out).unwrap();
        out.flush().unwrap();
        assert!(out.is_closed());
        assert_eq!(out.inner.taken, b"ID\npoll-0\npo");
        // Once closed, nothing more is tried.
        assert_eq!(out.inner.calls_after, 1);
    }

    #[test]
    fn other_write_errors_still_fail() {
        let mut out = ClosedPipeOk::new(Reader::new(4, io::ErrorKind::StorageFull));
        let e = listing(10).write_to(Format::Human, &mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(!out.is_closed());
    }

    #[test]
    fn an_open_pipe_gets_everything() {
        let mut out = ClosedPipeOk::new(Reader::new(usize::MAX, io::ErrorKind::BrokenPipe));
        listing(2).write_to(Format::Human, &mut out).unwrap();
        out.flush().unwrap();
        assert!(!out.is_closed());
        assert_eq!(out.inner.taken, b"ID\npoll-0\npoll-1\n");
    }

    #[test]
    fn json_is_the_raw_answer_and_text_is_the_blocks() {
        let reply = Reply::new(
            json!({"kind": "poll", "version": 2}),
            [
                Block::Line("revoked\tops".into()),
                Block::Fields(vec![("kind".into(), "poll".into())]),
            ],
        );
        let mut out = Vec::new();
        reply.write_to(Format::Json, &mut out).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, reply.json);
        let mut out = Vec::new();
        reply.write_to(Format::Human, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "revoked\\tops\nkind: poll\n"
        );
    }
}
