//! `dig` against a DNS server ([`dig_at`]), and a strict parser for its default text output.
//! Tests assert on what the server put on the wire, as `dig` decoded it; anything the parser does
//! not recognise is an error rather than a line silently skipped, so a malformed reply (or a
//! `dig` warning about one) cannot pass.

use std::fmt;
use std::process::{Command, Stdio};

/// The question section as `dig` echoes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The owner name exactly as it came back, case included (`ApP.InTeRnAl.`).
    pub name: String,
    /// The class mnemonic (`IN`).
    pub class: String,
    /// The type mnemonic (`A`, `HTTPS`, ...).
    pub rtype: String,
}

/// One resource record of the answer, authority or additional section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name as it came back.
    pub name: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// Class mnemonic.
    pub class: String,
    /// Type mnemonic.
    pub rtype: String,
    /// The RDATA in presentation form, fields joined by single spaces.
    pub data: String,
}

/// One `dig` exchange, parsed.
#[derive(Debug, Clone)]
pub struct Dig {
    /// The response code (`NOERROR`, `NXDOMAIN`, `REFUSED`, ...).
    pub status: String,
    /// The header flags (`qr`, `aa`, `tc`, `rd`, ...).
    pub flags: Vec<String>,
    /// The question section, when the reply had one.
    pub question: Option<Question>,
    /// The answer section, in wire order.
    pub answers: Vec<Record>,
    /// The authority section, in wire order.
    pub authority: Vec<Record>,
    /// The additional section, without the OPT pseudo-record.
    pub additional: Vec<Record>,
    /// The UDP payload size of the reply's OPT record; `None` when the reply carried no OPT.
    pub edns_udp: Option<u16>,
    /// The EDNS flags of the reply's OPT record (`do`).
    pub edns_flags: Vec<String>,
    /// The options of the reply's OPT record, by the name `dig` gives them (`COOKIE`, `NSID`).
    pub edns_options: Vec<String>,
    /// The reply's size in bytes (`MSG SIZE  rcvd`).
    pub size: usize,
    /// The transport of the reply that was printed: `UDP` or `TCP`.
    pub transport: String,
    /// Whether `dig` saw TC over UDP and asked again over TCP.
    pub retried_over_tcp: bool,
    /// The whole output, for failure messages.
    pub raw: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Opt,
    Question,
    Answer,
    Authority,
    Additional,
}

/// Lines outside any section that carry nothing the tests look at.
const IGNORED_PREFIXES: &[&str] = &[
    "; <<>> DiG ",
    ";; global options:",
    ";; Got answer:",
    ";; WARNING: recursion requested but not available",
    ";; Query time:",
    ";; WHEN:",
];

impl Dig {
    /// Parses `dig`'s output, or says which line it could not place.
    pub fn parse(raw: &str) -> Result<Dig, String> {
        Parser::default().run(raw)
    }

    /// Whether the header has `flag` (`"aa"`, `"tc"`, ...).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The RDATA of every answer, in order.
    pub fn answer_data(&self) -> Vec<&str> {
        self.answers.iter().map(|r| r.data.as_str()).collect()
    }
}

/// Runs `dig @SERVER -p PORT +time=2 +tries=1 ARGS...` against any DNS server (ours or an
/// upstream a test started) and parses the reply. A `dig` that got no reply is an `Err`; a reply
/// that cannot be parsed panics with the raw output.
pub fn dig_at(server: &str, port: u16, args: &[&str]) -> Result<Dig, String> {
    dig_wrapped(&[], server, port, args)
}

/// Like [`dig_at`], with `dig` run by `wrapper` (`ip netns exec NAME`), empty for none.
pub fn dig_wrapped(
    wrapper: &[String],
    server: &str,
    port: u16,
    args: &[&str],
) -> Result<Dig, String> {
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg("dig");
            command
        }
        None => Command::new("dig"),
    };
    let output = command
        .arg(format!("@{server}"))
        .args(["-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        // No ~/.digrc of the machine running the tests.
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run dig (bind9-dnsutils)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "dig {} exited with {}:\n{stdout}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(Dig::parse(&stdout).unwrap_or_else(|error| panic!("{error}\n--- raw ---\n{stdout}")))
}

impl fmt::Display for Dig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[derive(Default)]
struct Parser {
    status: Option<String>,
    flags: Option<Vec<String>>,
    counts: Option<[usize; 4]>,
    question: Option<Question>,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additional: Vec<Record>,
    opt_seen: bool,
    edns_udp: Option<u16>,
    edns_flags: Vec<String>,
    edns_options: Vec<String>,
    size: Option<usize>,
    transport: Option<String>,
    retried_over_tcp: bool,
}

impl Parser {
    fn run(mut self, raw: &str) -> Result<Dig, String> {
        let mut section = Section::None;
        for (number, line) in raw.lines().enumerate() {
            let fail = |why: &str| Err(format!("dig output line {}: {why}: {line:?}", number + 1));
            if line.trim().is_empty() {
                section = Section::None;
                continue;
            }
            if let Some(next) = section_header(line) {
                section = next;
                if next == Section::Opt {
                    self.opt_seen = true;
                }
                continue;
            }
            let result = match section {
                Section::None => self.header_line(line),
                Section::Opt => self.opt_line(line),
                Section::Question => self.question_line(line),
                Section::Answer => record(line).map(|r| self.answers.push(r)),
                Section::Authority => record(line).map(|r| self.authority.push(r)),
                Section::Additional => record(line).map(|r| self.additional.push(r)),
            };
            if let Err(why) = result {
                return fail(&why);
            }
        }
        self.finish(raw)
    }

    fn header_line(&mut self, line: &str) -> Result<(), String> {
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<- ") {
            if self.status.is_some() {
                return Err("a second reply header".to_string());
            }
            let status = between(rest, "status: ", ",").ok_or("no status in the header")?;
            self.status = Some(status.to_string());
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            let (flags, counts) = rest.split_once(';').ok_or("no ';' after the flags")?;
            self.flags = Some(flags.split_whitespace().map(str::to_string).collect());
            let mut parsed = [0usize; 4];
            for (slot, label) in
                parsed
                    .iter_mut()
                    .zip(["QUERY: ", "ANSWER: ", "AUTHORITY: ", "ADDITIONAL: "])
            {
                let count = counts
                    .split(',')
                    .find_map(|part| part.trim().strip_prefix(label))
                    .ok_or_else(|| format!("no {label}count"))?;
                *slot = count
                    .parse()
                    .map_err(|_| format!("bad {label}count {count:?}"))?;
            }
            self.counts = Some(parsed);
        } else if let Some(rest) = line.strip_prefix(";; MSG SIZE  rcvd: ") {
            let size = rest.trim().parse().map_err(|_| "bad message size")?;
            self.size = Some(size);
        } else if let Some(rest) = line.strip_prefix(";; SERVER: ") {
            let transport = between(rest, ") (", ")").ok_or("no transport after the server")?;
            self.transport = Some(transport.to_string());
        } else if line == ";; Truncated, retrying in TCP mode." {
            self.retried_over_tcp = true;
        } else if line.starts_with("; (") && line.ends_with("found)") {
            // "; (1 server found)"
        } else if !IGNORED_PREFIXES.iter().any(|p| line.starts_with(p)) {
            return Err("unrecognised line".to_string());
        }
        Ok(())
    }

    fn opt_line(&mut self, line: &str) -> Result<(), String> {
        if let Some(rest) = line.strip_prefix("; EDNS: ") {
            let udp = rest
                .rsplit_once("udp: ")
                .map(|(_, udp)| udp.trim())
                .ok_or("no udp size in the EDNS line")?;
            self.edns_udp = Some(udp.parse().map_err(|_| "bad EDNS udp size")?);
            if let Some(flags) = between(rest, "flags:", ";") {
                self.edns_flags = flags.split_whitespace().map(str::to_string).collect();
            }
            Ok(())
        } else if let Some((option, _)) = line.strip_prefix("; ").and_then(|o| o.split_once(':')) {
            // Other EDNS options (COOKIE, NSID, ...).
            self.edns_options.push(option.to_string());
            Ok(())
        } else {
            Err("unrecognised OPT pseudosection line".to_string())
        }
    }

    fn question_line(&mut self, line: &str) -> Result<(), String> {
        if self.question.is_some() {
            return Err("a second question".to_string());
        }
        let rest = line.strip_prefix(';').ok_or("question line without ';'")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [name, class, rtype] = fields.as_slice() else {
            return Err("a question line is NAME CLASS TYPE".to_string());
        };
        self.question = Some(Question {
            name: (*name).to_string(),
            class: (*class).to_string(),
            rtype: (*rtype).to_string(),
        });
        Ok(())
    }

    fn finish(self, raw: &str) -> Result<Dig, String> {
        let fail = |why: String| Err(format!("{why} in dig output:\n{raw}"));
        let (Some(status), Some(flags), Some(counts)) = (self.status, self.flags, self.counts)
        else {
            return fail("no reply header".to_string());
        };
        let Some(size) = self.size else {
            return fail("no MSG SIZE line".to_string());
        };
        let Some(transport) = self.transport else {
            return fail("no SERVER line".to_string());
        };
        let found = [
            usize::from(self.question.is_some()),
            self.answers.len(),
            self.authority.len(),
            self.additional.len() + usize::from(self.opt_seen),
        ];
        if found != counts {
            return fail(format!(
                "the header counts {counts:?} (question, answer, authority, additional) but \
                 the sections hold {found:?}"
            ));
        }
        Ok(Dig {
            status,
            flags,
            question: self.question,
            answers: self.answers,
            authority: self.authority,
            additional: self.additional,
            edns_udp: self.edns_udp,
            edns_flags: self.edns_flags,
            edns_options: self.edns_options,
            size,
            transport,
            retried_over_tcp: self.retried_over_tcp,
            raw: raw.to_string(),
        })
    }
}

fn section_header(line: &str) -> Option<Section> {
    Some(match line {
        ";; OPT PSEUDOSECTION:" => Section::Opt,
        ";; QUESTION SECTION:" => Section::Question,
        ";; ANSWER SECTION:" => Section::Answer,
        ";; AUTHORITY SECTION:" => Section::Authority,
        ";; ADDITIONAL SECTION:" => Section::Additional,
        _ => return None,
    })
}

fn record(line: &str) -> Result<Record, String> {
    let mut fields = line.split_whitespace();
    let mut next = |what: &str| fields.next().ok_or(format!("record without {what}"));
    let name = next("a name")?.to_string();
    let ttl = next("a TTL")?;
    let ttl = ttl.parse().map_err(|_| format!("bad TTL {ttl:?}"))?;
    let class = next("a class")?.to_string();
    let rtype = next("a type")?.to_string();
    let data = fields.collect::<Vec<_>>().join(" ");
    if data.is_empty() {
        return Err("record without data".to_string());
    }
    Ok(Record {
        name,
        ttl,
        class,
        rtype,
        data,
    })
}

/// The text between `start` and the next `end` in `text`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let (_, after) = text.split_once(start)?;
    let (inside, _) = after.split_once(end)?;
    Some(inside)
}

/// A reply as `dig` 9.18 prints it, for the parser's own tests.
const SAMPLE: &str = "
; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @127.0.0.1 -p 35261 +time=2 +tries=1 NoPe.internal A
; (1 server found)
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 18453
;; flags: qr aa rd; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 1
;; WARNING: recursion requested but not available

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
;; QUESTION SECTION:
;NoPe.internal.\t\t\tIN\tA

;; AUTHORITY SECTION:
internal.\t\t5\tIN\tSOA\tfailover-dns.internal. hostmaster.internal. 1 3600 600 86400 5

;; Query time: 0 msec
;; SERVER: 127.0.0.1#35261(127.0.0.1) (UDP)
;; WHEN: Wed Nov 25 10:27:55 UTC 2026
;; MSG SIZE  rcvd: 102
";

#[test]
fn dig_parser_reads_every_section() {
    let dig = Dig::parse(SAMPLE).expect("the sample parses");
    assert_eq!(dig.status, "NXDOMAIN");
    assert_eq!(dig.flags, ["qr", "aa", "rd"]);
    let question = dig.question.as_ref().expect("a question");
    assert_eq!(
        (
            question.name.as_str(),
            question.class.as_str(),
            question.rtype.as_str()
        ),
        ("NoPe.internal.", "IN", "A")
    );
    assert!(dig.answers.is_empty() && dig.additional.is_empty());
    assert_eq!(
        dig.authority,
        [Record {
            name: "internal.".to_string(),
            ttl: 5,
            class: "IN".to_string(),
            rtype: "SOA".to_string(),
            data: "failover-dns.internal. hostmaster.internal. 1 3600 600 86400 5".to_string(),
        }]
    );
    assert_eq!(
        (
            dig.edns_udp,
            dig.size,
            dig.transport.as_str(),
            dig.retried_over_tcp
        ),
        (Some(1232), 102, "UDP", false)
    );
}

#[test]
fn dig_parser_rejects_what_it_does_not_understand() {
    let cases = [
        (
            "a dig warning about the reply",
            SAMPLE.replace(
                ";; Got answer:",
                ";; Got answer:\n;; Warning: Message parser reports malformed message packet.",
            ),
        ),
        (
            "counts that disagree with the sections",
            SAMPLE.replace("AUTHORITY: 1", "AUTHORITY: 2"),
        ),
        ("a second reply", format!("{SAMPLE}{SAMPLE}")),
        (
            "a record without data",
            SAMPLE.replace(
                "\tSOA\tfailover-dns.internal. hostmaster.internal. 1 3600 600 86400 5",
                "\tSOA",
            ),
        ),
        (
            "no reply at all",
            SAMPLE.replace(";; ->>HEADER<<-", ";; ->>HEAD<<-"),
        ),
    ];
    for (what, text) in cases {
        assert!(Dig::parse(&text).is_err(), "{what} must not parse:\n{text}");
    }
}
