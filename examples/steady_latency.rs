//! A latency probe for `scripts/bench-peers.sh`: DNS queries at a steady rate over UDP to a
//! server on loopback, and the round-trip time of each, with the client *busy-polling* its
//! socket so that its own wake-ups add nothing (dnsperf's receive thread sleeps between
//! replies, and on a VM each of its wake-ups costs tens of µs). It also runs the floor the
//! probe is compared with: a UDP echo that does no DNS work at all.
//!
//! ```text
//! cargo run --release --example steady_latency -- echo 127.0.0.1:5390
//! cargo run --release --example steady_latency -- probe 127.0.0.1:5390 QUERY_FILE 10000 10
//! ```
//!
//! `echo ADDR` prints `echo on ADDR` (port 0 picks a free port) and answers until killed.
//!
//! `probe SERVER QUERY_FILE RATE SECONDS` reads dnsperf's query format (`name type` per line),
//! sends the queries in turn at RATE per second for SECONDS from one socket, and prints
//! `p50 p90 p99 p999 answered lost` (µs; a query unanswered after 1 s, or not sent, is lost).
//! Only loopback addresses are accepted: the probe may not send anywhere else.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

/// How long a query may wait for its reply before it counts as lost.
const LOST_AFTER: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["echo", listen] => parse_loopback(listen).and_then(echo),
        ["probe", server, queries, rate, seconds] => (|| {
            let server = parse_loopback(server)?;
            let queries = read_queries(queries)?;
            let rate: u32 = rate.parse().map_err(|e| format!("rate {rate}: {e}"))?;
            let seconds: u64 = seconds
                .parse()
                .map_err(|e| format!("seconds {seconds}: {e}"))?;
            probe(server, &queries, rate, Duration::from_secs(seconds))
        })(),
        _ => Err("usage: steady_latency echo ADDR | probe SERVER QUERY_FILE RATE SECONDS".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("steady_latency: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_loopback(text: &str) -> Result<SocketAddr, String> {
    let address: SocketAddr = text.parse().map_err(|e| format!("address {text}: {e}"))?;
    if !address.ip().is_loopback() {
        return Err(format!("{address} is not a loopback address"));
    }
    Ok(address)
}

/// Answers every datagram with itself, the QR bit set: the least any server can do.
fn echo(listen: SocketAddr) -> Result<(), String> {
    let socket = UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    let bound = socket.local_addr().map_err(|e| format!("address: {e}"))?;
    // Port 0 picks a free port; say which, for whoever started us.
    println!("echo on {bound}");
    std::io::Write::flush(&mut std::io::stdout()).map_err(|e| format!("stdout: {e}"))?;
    let mut buffer = [0u8; 4096];
    loop {
        let (length, peer) = socket
            .recv_from(&mut buffer)
            .map_err(|e| format!("receive: {e}"))?;
        if let Some(flags) = buffer.get_mut(2) {
            *flags |= 0x80;
        }
        if let Some(reply) = buffer.get(..length) {
            // A send error (the client went away) is no reason to stop.
            let _ = socket.send_to(reply, peer);
        }
    }
}

/// The query file: one encoded query (ID 0, RD) per line of `name type`.
fn read_queries(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut queries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = |e: &dyn std::fmt::Display| format!("{path}:{}: {e}", number + 1);
        let mut words = line.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let name = Name::from_ascii(name).map_err(|e| at(&e))?;
        let query_type = RecordType::from_str(kind).map_err(|e| at(&e))?;
        let mut message = Message::new(0, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.queries.push(Query::query(name, query_type));
        queries.push(message.to_vec().map_err(|e| at(&e))?);
    }
    if queries.is_empty() {
        return Err(format!("{path}: no queries"));
    }
    Ok(queries)
}

/// Sends `queries` in turn at `rate` per second for `duration` (rate × duration in all), busy-polling for replies, and
/// prints the round-trip percentiles.
fn probe(
    server: SocketAddr,
    queries: &[Vec<u8>],
    rate: u32,
    duration: Duration,
) -> Result<(), String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .map_err(|e| format!("{e}"))?;
    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(server)
        .map_err(|e| format!("connect {server}: {e}"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    let interval = Duration::from_secs(1) / rate.max(1);
    // Exactly rate × duration queries, each at its time: a loop that falls behind (a loaded
    // machine) sends the ones due at once rather than fewer, so answered + lost is always the
    // whole count.
    let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
    let started = Instant::now();
    let mut next_send = started;
    // When each ID's query went out (IDs cycle; at 65,536 queries in flight one would be
    // overwritten, which needs a server a second or more late at 65k qps).
    let mut sent_at: Vec<Option<Instant>> = vec![None; 1 << 16];
    let mut in_flight: VecDeque<u16> = VecDeque::new();
    let mut round_trips: Vec<Duration> = Vec::new();
    let (mut lost, mut sent) = (0u64, 0u64);
    let mut buffer = [0u8; 4096];
    loop {
        let now = Instant::now();
        let sending = sent < total;
        while sent < total && now >= next_send {
            let id = (sent % (1 << 16)) as u16;
            let index = (sent % queries.len() as u64) as usize;
            let mut query = queries.get(index).cloned().unwrap_or_default();
            if let Some(head) = query.get_mut(..2) {
                head.copy_from_slice(&id.to_be_bytes());
            }
            if socket.send(&query).is_ok() {
                sent_at[usize::from(id)] = Some(Instant::now());
                in_flight.push_back(id);
            } else {
                // Never sent, never answered.
                lost += 1;
            }
            sent += 1;
            next_send += interval;
        }
        match socket.recv(&mut buffer) {
            Ok(length) if length >= 2 => {
                let id = u16::from_be_bytes([buffer[0], buffer[1]]);
                if let Some(at) = sent_at[usize::from(id)].take() {
                    round_trips.push(at.elapsed());
                }
            }
            _ => {}
        }
        // Retire the oldest queries: answered ones, and those unanswered for too long.
        while let Some(&oldest) = in_flight.front() {
            match sent_at[usize::from(oldest)] {
                None => {
                    in_flight.pop_front();
                }
                Some(at) if at.elapsed() > LOST_AFTER => {
                    sent_at[usize::from(oldest)] = None;
                    lost += 1;
                    in_flight.pop_front();
                }
                Some(_) => break,
            }
        }
        if !sending && in_flight.is_empty() {
            break;
        }
    }
    if round_trips.is_empty() {
        return Err(format!("no answers from {server} ({sent} queries sent)"));
    }
    round_trips.sort_unstable();
    let percentile = |p: f64| {
        let index = ((round_trips.len() as f64 * p) as usize).min(round_trips.len() - 1);
        round_trips[index].as_secs_f64() * 1e6
    };
    println!(
        "{:.0} {:.0} {:.0} {:.0} {} {}",
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        percentile(0.999),
        round_trips.len(),
        lost
    );
    Ok(())
}
