//! Private network namespaces for tests that need a network of their own: a dead path made with
//! an nftables `drop` rule, the C library's resolver pointed at a server on port 53, HTTP
//! listeners on endpoint addresses. Each namespace is created by the test (`ip netns add`, root
//! only), has only its loopback interface, and is deleted when dropped; its
//! `/etc/resolv.conf` (bind-mounted by `ip netns exec`) names the server on 127.0.0.1:53.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether the tests run as root (namespaces, nftables and port 53 need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// A network namespace of the test's own, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with loopback up and a resolv.conf naming 127.0.0.1; `None` (after
    /// printing `skipped: needs root`) when not root.
    pub fn create(test: &str) -> Option<Netns> {
        if !crate::support::needs_root(&format!("{test} builds a network namespace")) {
            return None;
        }
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "fdns-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let etc = format!("/etc/netns/{name}");
        std::fs::create_dir_all(&etc).expect("create /etc/netns/NAME");
        std::fs::write(
            format!("{etc}/resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n",
        )
        .expect("write the namespace's resolv.conf");
        let netns = Netns { name };
        netns.ip(&["netns", "add", &netns.name]);
        netns.run_ok(&["ip", "link", "set", "lo", "up"]);
        Some(netns)
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn ip(&self, args: &[&str]) {
        let output = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            output.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `command` run inside the namespace.
    pub fn command(&self, command: &[&str]) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.name])
            .args(command)
            .stdin(Stdio::null());
        wrapped
    }

    /// Runs `command` inside the namespace to completion.
    pub fn run(&self, command: &[&str]) -> Output {
        self.command(command)
            .output()
            .unwrap_or_else(|e| panic!("run {command:?} in the namespace: {e}"))
    }

    /// Runs `command` inside the namespace and panics unless it succeeds.
    pub fn run_ok(&self, command: &[&str]) -> Output {
        let output = self.run(command);
        assert!(
            output.status.success(),
            "{command:?} in the namespace: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Starts `command` inside the namespace, output discarded.
    pub fn spawn(&self, command: &[&str]) -> Child {
        self.command(command)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?} in the namespace: {e}"))
    }

    /// Makes TCP to `address:port` a dead path: every packet to it (SYNs, and the data of
    /// connections already open) dropped without an answer where it arrives, as when a path's
    /// tunnel or gateway dies. Dropped on input, not output: the sender's packets leave, so
    /// its connects and data retransmit as over a real dead path (a local output drop fails
    /// the send instead, and data waits unsent). Can be called again for more paths.
    pub fn blackhole(&self, address: &str, port: u16) {
        let rules = format!(
            "table inet failover_test {{\n  chain input {{\n    type filter hook input priority 0;\n    \
             ip daddr {address} tcp dport {port} drop\n  }}\n}}\n"
        );
        self.nft(&rules);
    }

    /// Removes every rule [`Netns::blackhole`] added.
    pub fn heal(&self) {
        self.run_ok(&["nft", "delete", "table", "inet", "failover_test"]);
    }

    fn nft(&self, rules: &str) {
        let path = std::env::temp_dir().join(format!("{}-rules.nft", self.name));
        std::fs::write(&path, rules).expect("write the nftables rules");
        let path_text = path
            .to_str()
            .expect("temporary paths are UTF-8")
            .to_string();
        self.run_ok(&["nft", "-f", &path_text]);
        let _ = std::fs::remove_file(path);
    }

    /// The TCP sockets in SYN-SENT to `address` (as `ss` sees them), one line each.
    pub fn syn_sent_to(&self, address: &str) -> Vec<String> {
        let output = self.run_ok(&["ss", "-Htn", "state", "syn-sent", "dst", address]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}
