//! A minimal agent embedding failover-dns: it serves the sample zones on a free loopback port in
//! its own tokio runtime, asks its own DNS server for `app.internal`, reports that the first
//! address failed (as the agent's connection layer would), and prints the answer order before
//! and after, both from the library and from a real DNS query. Then it shuts the server down.
//!
//! Run: `cargo run --example embed_agent [ZONES_DIR]` (default `zones`), from the repository's
//! root: the identity the sample zones' policies grant comes from its `failover-dns.toml`, as
//! an agent's would come from its own settings.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use failover_dns::FailoverDns;
use failover_dns::Outcome;
use failover_dns::ReportSource;
use failover_dns::ReportTarget;
use failover_dns::Settings;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};

/// Asks the embedded server for the A records of `name` over UDP, as an application would.
async fn resolve(
    server: SocketAddr,
    name: &str,
) -> Result<Vec<Ipv4Addr>, Box<dyn std::error::Error>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    socket.send_to(&query.to_vec()?, server).await?;
    let mut buffer = vec![0u8; 4096];
    let length = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buffer)).await??;
    let reply = Message::from_vec(buffer.get(..length).unwrap_or_default())?;
    Ok(reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let zones = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "zones".to_string());
    let sample = Settings::from_file(std::path::Path::new("failover-dns.toml"))?;
    let settings = Settings {
        zones_dir: zones.into(),
        identity: sample.identity,
        // Names outside the zones are not this example's business.
        upstreams: Some(Vec::new()),
        ..Settings::default()
    };
    let dns = FailoverDns::from_settings(settings)?;
    let listener = failover_dns::bind("127.0.0.1:0".parse()?).await?;
    let address = listener.local_addr()?;
    let mut events = dns.subscribe();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn({
        let dns = dns.clone();
        async move {
            dns.serve(vec![listener], None, None, async {
                let _ = stopped.await;
            })
            .await;
        }
    });

    let before = dns
        .answer_order("app.internal")
        .ok_or("app.internal is not a shared name")?;
    println!("serving on {address}");
    println!("order before: {}", join(&before));
    println!(
        "dns before: {}",
        join(&resolve(address, "app.internal.").await?)
    );

    let first = *before
        .first()
        .ok_or("app.internal has no permitted endpoint")?;
    dns.report(
        &ReportTarget::Address(first),
        Outcome::Failure,
        None,
        ReportSource::Agent,
    )?;
    let after = dns
        .answer_order("app.internal")
        .ok_or("app.internal disappeared")?;
    println!("reported failure of {first}");
    println!("order after: {}", join(&after));
    println!(
        "dns after: {}",
        join(&resolve(address, "app.internal.").await?)
    );
    while let Ok(event) = events.try_recv() {
        println!("event: {}", serde_json::to_string(&event)?);
    }

    let _ = stop.send(());
    serving.await?;
    println!("stopped");
    Ok(())
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
