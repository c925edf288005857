//! The floor: the least a durable ping server can do, to tell what part of the distance to
//! `bare-server` is keepwatch's own. axum takes each ping's body and hands it to one writer
//! thread, which commits whatever is queued in one SQLite transaction (WAL,
//! `synchronous=FULL`, an append-only table without indexes) and only then answers 200: the
//! group commit the design notes' LIMITS measured. No check lookup, no state, no events.
//!
//! Usage: floor-server [127.0.0.1:9103] [data-dir]

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::routing::any;
use tokio::sync::oneshot;

type Ping = (String, Bytes, oneshot::Sender<()>);

fn writer(path: std::path::PathBuf, pings: std::sync::mpsc::Receiver<Ping>) -> anyhow::Result<()> {
    let mut db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS pings (seq INTEGER PRIMARY KEY, code TEXT NOT NULL,
                                           at INTEGER NOT NULL, body BLOB);",
    )?;
    let (mut commits, mut committed, mut since) = (0u64, 0u64, std::time::Instant::now());
    while let Ok(first) = pings.recv() {
        let mut batch = vec![first];
        batch.extend(pings.try_iter().take(4096));
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros() as i64;
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO pings (code, at, body) VALUES (?1, ?2, ?3)")?;
            for (code, body, _) in &batch {
                insert.execute(rusqlite::params![code, at, &body[..]])?;
            }
        }
        tx.commit()?;
        commits += 1;
        committed += batch.len() as u64;
        for (_, _, reply) in batch {
            let _ = reply.send(());
        }
        if since.elapsed() >= std::time::Duration::from_secs(5) {
            eprintln!(
                "{commits} commits, {:.1} pings per commit",
                committed as f64 / commits as f64
            );
            (commits, committed, since) = (0, 0, std::time::Instant::now());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9103".into());
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "floor-data".into()));
    std::fs::create_dir_all(&dir)?;
    let (queue, pings) = std::sync::mpsc::channel::<Ping>();
    std::thread::spawn(move || {
        if let Err(e) = writer(dir.join("floor.db"), pings) {
            eprintln!("writer stopped: {e}");
            std::process::exit(1);
        }
    });
    let ping = move |Path(params): Path<Vec<String>>, body: Bytes| {
        let queue = queue.clone();
        async move {
            let (reply, done) = oneshot::channel();
            let code = params.into_iter().next().unwrap_or_default();
            if queue.send((code, body, reply)).is_err() || done.await.is_err() {
                return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not stored");
            }
            (axum::http::StatusCode::OK, "OK")
        }
    };
    let app = Router::new()
        .route("/ping/{a}", any(ping.clone()))
        .route("/ping/{a}/{b}", any(ping));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "floor server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
