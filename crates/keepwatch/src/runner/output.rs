//! The job's output on its way through: copied unchanged, its tail kept for the finish
//! ping, and its lines matched against `--volume-regex`. Memory stays bounded by the tail
//! and one line.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use regex::Regex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Lines longer than this are matched on their first part only.
const MAX_LINE: usize = 64 * 1024;

/// The last `limit` bytes written through it.
#[derive(Clone)]
pub struct Tail {
    bytes: Arc<Mutex<VecDeque<u8>>>,
    /// Shared and changeable: the job runs before the server's answer says the real limit.
    limit: Arc<AtomicUsize>,
}

impl Tail {
    pub fn new(limit: usize) -> Tail {
        Tail {
            bytes: Arc::default(),
            limit: Arc::new(AtomicUsize::new(limit)),
        }
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
        self.push(&[]);
    }

    pub fn push(&self, chunk: &[u8]) {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        bytes.extend(chunk.iter().skip(chunk.len().saturating_sub(limit)));
        let excess = bytes.len().saturating_sub(limit);
        bytes.drain(..excess);
    }

    pub fn take(&self) -> Vec<u8> {
        self.bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// The number in the last output line that matched `--volume-regex` (its first capture
/// group, or the whole match), shared by the stdout and stderr copiers.
#[derive(Clone)]
pub struct VolumeMatcher {
    regex: Arc<Regex>,
    last: Arc<Mutex<Option<i64>>>,
}

impl VolumeMatcher {
    pub fn new(regex: Regex) -> VolumeMatcher {
        VolumeMatcher {
            regex: Arc::new(regex),
            last: Arc::default(),
        }
    }

    fn line(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let number = self.regex.captures_iter(&line).last().and_then(|captures| {
            let text = captures.get(1).or_else(|| captures.get(0))?.as_str();
            parse_count(text)
        });
        if number.is_some() {
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = number;
        }
    }

    pub fn volume(&self) -> Option<i64> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A count of items: digits, with `,` or `_` as thousands separators allowed.
pub fn parse_count(text: &str) -> Option<i64> {
    let digits: String = text
        .trim()
        .chars()
        .filter(|c| *c != ',' && *c != '_')
        .collect();
    digits.parse::<i64>().ok().filter(|n| *n >= 0)
}

/// Copies a child's output to ours, keeping the tail and matching whole lines.
pub async fn pass_through(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    tail: Tail,
    volume: Option<VolumeMatcher>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut line = Vec::new();
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = &buffer[..n];
                tail.push(chunk);
                if let Some(matcher) = &volume {
                    for piece in chunk.split_inclusive(|b| *b == b'\n') {
                        let room = MAX_LINE.saturating_sub(line.len());
                        line.extend_from_slice(&piece[..piece.len().min(room)]);
                        if piece.ends_with(b"\n") {
                            matcher.line(&line);
                            line.clear();
                        }
                    }
                }
                // A closed stdout must not stop the job: keep draining its pipe.
                let _ = to.write_all(chunk).await;
                let _ = to.flush().await;
            }
        }
    }
    if let Some(matcher) = &volume
        && !line.is_empty()
    {
        matcher.line(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_matching_line_gives_the_volume_across_chunk_boundaries() {
        let matcher = VolumeMatcher::new(Regex::new(r"processed (\S+) rows").unwrap());
        let tail = Tail::new(8);
        let output: &[u8] = b"processed 10 rows\nnoise\nprocessed 1,234,567 ro";
        let (reader, mut writer) = tokio::io::duplex(4);
        let copy = tokio::spawn(pass_through(
            reader,
            tokio::io::sink(),
            tail.clone(),
            Some(matcher.clone()),
        ));
        writer.write_all(output).await.unwrap();
        writer
            .write_all(b"ws\nprocessed many rows\n")
            .await
            .unwrap();
        drop(writer);
        copy.await.unwrap();
        assert_eq!(matcher.volume(), Some(1_234_567), "a non-number is skipped");
        assert_eq!(tail.take(), b"ny rows\n");
    }

    #[test]
    fn counts_allow_separators_and_refuse_the_rest() {
        assert_eq!(parse_count(" 12_000 "), Some(12_000));
        assert_eq!(parse_count("1,5"), Some(15));
        assert_eq!(parse_count("-3"), None);
        assert_eq!(parse_count("3.5"), None);
    }
}
