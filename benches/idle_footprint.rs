//! Idle footprint of `callguard run` connected to a PBX with no calls: resident memory and CPU
//! time over a minute (`IDLE_SECS` to change), read from /proc. Run:
//! `cargo bench --bench idle_footprint`.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;

fn main() {
    let secs: u64 = std::env::var("IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/", listener.local_addr().expect("addr"));
        let (connected_tx, mut connected) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = connected_tx.clone();
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
                    let _ = tx.send(()).await;
                    let (_sink, mut rx) = ws.split();
                    while let Some(Ok(_)) = rx.next().await {}
                });
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("callguard.toml");
        std::fs::write(
            &config,
            format!(
                "[pbx]\nurl = \"{url}\"\n[state]\ndir = \"{0}/state\"\n[evidence]\ndir = \"{0}/evidence\"\n[log]\nlevel = \"warn\"\n",
                dir.path().display()
            ),
        )
        .expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("CALLGUARD_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn callguard");
        tokio::time::timeout(Duration::from_secs(30), connected.recv()).await.expect("daemon did not connect");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = child.id();
        let (cpu0, _) = sample(pid);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let (cpu1, rss_kib) = sample(pid);
        let _ = child.kill();
        let _ = child.wait();
        let cpu = cpu1 - cpu0;
        println!(
            "idle footprint over {secs} s connected, no calls: RSS {:.1} MiB, CPU {:.3} s ({:.4} % of one core)",
            rss_kib as f64 / 1024.0,
            cpu,
            cpu / secs as f64 * 100.0
        );
    });
}

/// (user+system CPU seconds, resident KiB) of a process.
fn sample(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let cpu = (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}
