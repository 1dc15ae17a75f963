//! A table-driven DNS check: each case is a `dig` against the server with the status and the
//! answers expected, and every reply is also held to what must hold for any reply.

use super::dig::Dig;
use super::server::Server;

/// One expected DNS exchange for [`expect_answers`]: the `dig` arguments, the status, and the
/// RDATA of the answer section in order.
pub type Case<'a> = (&'a [&'a str], &'a str, &'a [&'a str]);

/// Runs every case against `server` and fails once, listing every case that did not hold.
///
/// Beyond status and answer data (in order), every case checks what must hold for any reply:
/// no TC; nothing in the additional section but OPT; answers owned by the name as asked; for
/// NOERROR and NXDOMAIN the AA flag, and when there are no answers exactly one SOA of the
/// (first) zone in the authority section (RFC 2308), else an empty authority section; for
/// REFUSED no AA and no authority section.
pub fn expect_answers(server: &Server, cases: &[Case<'_>]) {
    let mut failures = Vec::new();
    for (ask, status, answers) in cases {
        let reply = server.dig(ask);
        let problems = problems(server, &reply, status, answers);
        if !problems.is_empty() {
            failures.push(format!(
                "dig {}: {}\n{reply}",
                ask.join(" "),
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

fn problems(server: &Server, reply: &Dig, status: &str, answers: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if reply.status != status {
        problems.push(format!("status {} (expected {status})", reply.status));
    }
    if reply.answer_data() != answers {
        problems.push(format!(
            "answers {:?} (expected {answers:?})",
            reply.answer_data()
        ));
    }
    if reply.has_flag("tc") {
        problems.push("TC is set".to_string());
    }
    if !reply.additional.is_empty() {
        problems.push("records in the additional section".to_string());
    }
    let asked = reply.question.as_ref().map(|q| q.name.as_str());
    if let Some(record) = reply
        .answers
        .iter()
        .find(|r| Some(r.name.as_str()) != asked)
    {
        problems.push(format!(
            "answer owner {} differs from the question {asked:?}",
            record.name
        ));
    }
    match status {
        "NOERROR" | "NXDOMAIN" => {
            if !reply.has_flag("aa") {
                problems.push("AA is not set".to_string());
            }
            let soa_only = matches!(
                reply.authority.as_slice(),
                [soa] if soa.rtype == "SOA"
                    && server.origin() == Some(soa.name.to_ascii_lowercase().as_str())
            );
            if answers.is_empty() && !soa_only {
                problems.push(format!(
                    "authority is not exactly the SOA of {:?}",
                    server.origin()
                ));
            }
            if !answers.is_empty() && !reply.authority.is_empty() {
                problems.push("authority section on a positive answer".to_string());
            }
        }
        "REFUSED" => {
            if reply.has_flag("aa") {
                problems.push("AA is set on REFUSED".to_string());
            }
            if !reply.authority.is_empty() {
                problems.push("authority section on REFUSED".to_string());
            }
        }
        _ => {}
    }
    problems
}
