//! A KTAP version 1 printer (`Documentation/dev-tools/ktap.rst`).

use std::io::{self, Write};

/// Result of one test point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `ok N name`.
    Pass,
    /// `not ok N name # reason`.
    Fail(String),
    /// `ok N name # SKIP reason`.
    Skip(String),
}

/// Writes a KTAP document: header and plan on creation, then one line per
/// test point and `# ` diagnostics, then the totals.
pub struct Ktap<W: Write> {
    out: W,
    number: usize,
    pass: usize,
    fail: usize,
    skip: usize,
}

/// One line of free text: newlines would break the format.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl<W: Write> Ktap<W> {
    /// Prints `KTAP version 1` and the plan `1..planned`.
    pub fn new(mut out: W, planned: usize) -> io::Result<Ktap<W>> {
        writeln!(out, "KTAP version 1")?;
        writeln!(out, "1..{planned}")?;
        out.flush()?;
        Ok(Ktap {
            out,
            number: 0,
            pass: 0,
            fail: 0,
            skip: 0,
        })
    }

    /// Prints a diagnostic line `# text`.
    pub fn diag(&mut self, text: &str) -> io::Result<()> {
        writeln!(self.out, "# {}", one_line(text))?;
        self.out.flush()
    }

    /// Prints the next test point.
    pub fn result(&mut self, name: &str, outcome: &Outcome) -> io::Result<()> {
        self.number += 1;
        let n = self.number;
        match outcome {
            Outcome::Pass => {
                self.pass += 1;
                writeln!(self.out, "ok {n} {name}")?;
            }
            Outcome::Fail(reason) => {
                self.fail += 1;
                writeln!(self.out, "not ok {n} {name} # {}", one_line(reason))?;
            }
            Outcome::Skip(reason) => {
                self.skip += 1;
                writeln!(self.out, "ok {n} {name} # SKIP {}", one_line(reason))?;
            }
        }
        self.out.flush()
    }

    /// Prints `# totals: pass:P fail:F skip:S`; returns whether nothing failed.
    pub fn finish(mut self) -> io::Result<bool> {
        writeln!(
            self.out,
            "# totals: pass:{} fail:{} skip:{}",
            self.pass, self.fail, self.skip
        )?;
        self.out.flush()?;
        Ok(self.fail == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_ktap() {
        let mut buf = Vec::new();
        let mut k = Ktap::new(&mut buf, 3).unwrap();
        k.diag("rounds 10\nverified 20").unwrap();
        k.result("a", &Outcome::Pass).unwrap();
        k.result("b", &Outcome::Fail("WAIT_FENCE failed:\n ETIME".into()))
            .unwrap();
        k.result("c", &Outcome::Skip("no module".into())).unwrap();
        assert!(!k.finish().unwrap());
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "KTAP version 1\n1..3\n# rounds 10 verified 20\nok 1 a\nnot ok 2 b # WAIT_FENCE failed: ETIME\n\
             ok 3 c # SKIP no module\n# totals: pass:1 fail:1 skip:1\n"
        );
    }

    #[test]
    fn all_passed() {
        let mut buf = Vec::new();
        let mut k = Ktap::new(&mut buf, 1).unwrap();
        k.result("a", &Outcome::Pass).unwrap();
        assert!(k.finish().unwrap());
        assert!(
            String::from_utf8(buf)
                .unwrap()
                .ends_with("ok 1 a\n# totals: pass:1 fail:0 skip:0\n")
        );
    }
}
