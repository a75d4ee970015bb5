//! Fills a SQLite floor store with the seeded generator's three months (September–November
//! 2026, 60 agents, 50,000 calls), for the sample report under `docs/`:
//!   cargo run --example report_sample -- /tmp/sample/floor.db
//!   callguard --config CONFIG floor report --month 2026-11 --care --out DIR

use callguard::floor::service::report::Period;
use callguard::floor::service::report::sample::{SampleSpec, fill};
use callguard::floor::service::store::Store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: report_sample DB_FILE"))?;
    let store = Store::open(&format!("sqlite://{path}")).await?;
    for (i, m) in ["2026-09", "2026-10", "2026-11"].iter().enumerate() {
        let p = Period::month(m, 9 * 3600)?;
        fill(
            store.pool(),
            &SampleSpec::over(&p, 16_667, 60, 1000 + i as u64),
            m,
        )
        .await?;
    }
    store.close().await;
    Ok(())
}
