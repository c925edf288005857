//! A full disk: writes fail and say so (pings and `/api/v3/status/` answer 503), and once
//! there is room again everything resumes by itself, deliveries included. The data directory
//! is a small tmpfs the test mounts (CI runs as root); the test fails, not skips, without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{AppOptions, Receiver, TestApp, eventually, spawn_app_with};

/// A tmpfs of `size` mounted on a fresh temporary directory, unmounted on drop (also when
/// the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "keepwatch-test",
            ])
            .arg(dir.path())
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs to fill it and must run as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the server may still hold its files open when a failed assertion unwinds.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the file system has no room left; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    for chunk in [64 * 1024, 4096, 512, 1] {
        let block = vec![0u8; chunk];
        while file
            .write_all(&block)
            .and_then(|()| file.sync_all())
            .is_ok()
        {}
    }
    path
}

async fn status(app: &TestApp) -> StatusCode {
    app.api("GET", "/api/v3/status/", None, None).await.0
}

#[tokio::test]
async fn after_a_full_disk_writes_and_notifications_resume_by_themselves() {
    let disk = Tmpfs::mount("8m");
    let app = spawn_app_with(AppOptions {
        data_dir: Some(disk.path().to_path_buf()),
        ..AppOptions::default()
    })
    .await;
    let mut hook = Receiver::start(vec![]).await;
    app.webhook_channel(&hook, None).await;
    let check = app
        .create_check(json!({"name": "backup", "channels": "*"}))
        .await;
    let uuid = check["uuid"].as_str().unwrap();
    assert_eq!(app.ping("GET", &format!("/ping/{uuid}"), None).await.0, 200);
    assert_eq!(status(&app).await, StatusCode::OK);

    let filler = fill(disk.path());
    let (code, _, body) = app.ping("GET", &format!("/ping/{uuid}/log"), None).await;
    assert_eq!(
        code, 503,
        "a ping that cannot be stored is not acknowledged: {body}"
    );
    assert_eq!(
        status(&app).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "the health endpoint reports that writes fail"
    );
    // A write through the sqlx write pool whose COMMIT fails for lack of room.
    let (code, body) = app
        .post("/api/v3/checks/", Some(json!({"name": "during"})))
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    std::fs::remove_file(filler).unwrap();
    // No restart: the same server takes writes again.
    eventually(|| async { (status(&app).await == StatusCode::OK).then_some(()) }).await;
    app.create_check(json!({"name": "after"})).await;
    assert_eq!(
        app.ping("GET", &format!("/ping/{uuid}/fail"), None).await.0,
        200
    );
    let failed = hook.next().await.json();
    assert_eq!(failed["event"], "failed");
    assert_eq!(failed["check"]["uuid"], uuid);
    app.stop().await;
}
