//! The daemon's build history (BuildKit v0.11+): records of past and running builds
//! (`ListenBuildHistory`), their deletion (`UpdateBuildHistory`), their progress replayed
//! (`Status` on a finished build) and the blobs they name (containerd's content store).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::{
    BuildHistoryEventType, BuildHistoryRequest, BuildResultInfo, Descriptor as ProtoDescriptor,
    StatusRequest, UpdateBuildHistoryRequest,
};

use crate::progress::{ProgressEvent, ProgressTracker, SolveStatus};
use crate::{Client, Error, Result};

/// How many records one query asks for, as buildx.
const RECORDS_LIMIT: i32 = 50;

/// The response header in which BuildKit v0.13+ sends its clock.
const TIMESTAMP_HEADER: &str = "buildkit-current-timestamp";

/// A content-store blob a record names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobDescriptor {
    /// Media type.
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Annotations (`in-toto.io/predicate-type` on attestations).
    pub annotations: BTreeMap<String, String>,
}

impl From<&ProtoDescriptor> for BlobDescriptor {
    fn from(d: &ProtoDescriptor) -> Self {
        BlobDescriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
            annotations: d
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// The result of a build (or of one platform of it): its exported descriptors and attestations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordResult {
    /// Result descriptors (images, indexes), in the daemon's index order.
    pub results: Vec<BlobDescriptor>,
    /// Attestations (provenance) kept with the record.
    pub attestations: Vec<BlobDescriptor>,
}

impl From<&BuildResultInfo> for RecordResult {
    fn from(r: &BuildResultInfo) -> Self {
        let mut results: Vec<(i64, BlobDescriptor)> =
            r.results.iter().map(|(i, d)| (*i, d.into())).collect();
        results.sort_by_key(|(i, _)| *i);
        RecordResult {
            results: results.into_iter().map(|(_, d)| d).collect(),
            attestations: r.attestations.iter().map(Into::into).collect(),
        }
    }
}

/// One build record of the daemon's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    /// The solve reference (the build ID).
    pub build_ref: String,
    /// The frontend (`dockerfile.v0`).
    pub frontend: String,
    /// The frontend attributes the client sent (`filename`, `target`, `build-arg:…`, …).
    pub frontend_attrs: BTreeMap<String, String>,
    /// When the build started.
    pub created_at: Option<SystemTime>,
    /// When it ended; `None` while it runs.
    pub completed_at: Option<SystemTime>,
    /// Its error, as gRPC code and message.
    pub error: Option<(i32, String)>,
    /// Steps in total, completed and cached.
    pub num_total_steps: i32,
    /// Completed steps.
    pub num_completed_steps: i32,
    /// Steps answered from the cache.
    pub num_cached_steps: i32,
    /// Warnings the frontend reported.
    pub num_warnings: i32,
    /// The result of a single-platform build.
    pub result: Option<RecordResult>,
    /// The results of a multi-platform build, by platform.
    pub results: BTreeMap<String, RecordResult>,
    /// The daemon's clock when it answered (BuildKit v0.13+), for the duration of running
    /// builds.
    pub current_timestamp: Option<SystemTime>,
}

fn timestamp(ts: Option<&Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    let secs = u64::try_from(ts.seconds).ok()?;
    UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
}

/// Parses RFC 3339 with nanoseconds (`2026-12-05T05:26:54.669168931Z`), as the daemon writes
/// its clock header; `None` for anything else.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (time, offset) = match rest.find(['Z', '+', '-']) {
        Some(i) => rest.split_at(i),
        None => return None,
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(str::parse::<i64>);
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").get(..9)?.parse().ok()?
    };
    let off_secs = if offset == "Z" {
        0
    } else {
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (oh, om) = offset.get(1..)?.split_once(':')?;
        sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - off_secs;
    UNIX_EPOCH.checked_add(std::time::Duration::new(u64::try_from(secs).ok()?, nanos))
}

impl Client {
    /// The daemon's build records, newest first: all of them (at most 50, as buildx asks), or
    /// the one whose reference is `build_ref`. Records being deleted are left out.
    ///
    /// # Errors
    /// [`Error::Rpc`] when the daemon has no build history (BuildKit before v0.11:
    /// `Unimplemented`) or the call fails.
    pub async fn history(&self, build_ref: Option<&str>) -> Result<Vec<HistoryRecord>> {
        let request = BuildHistoryRequest {
            r#ref: build_ref.unwrap_or_default().to_owned(),
            early_exit: true,
            limit: RECORDS_LIMIT,
            ..BuildHistoryRequest::default()
        };
        let response = self
            .control
            .clone()
            .listen_build_history(request)
            .await
            .map_err(|s| Error::rpc("ListenBuildHistory", s))?;
        let now = response
            .metadata()
            .get(TIMESTAMP_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_rfc3339);
        let mut stream = response.into_inner();
        let mut out = Vec::new();
        while let Some(ev) = stream
            .message()
            .await
            .map_err(|s| Error::rpc("ListenBuildHistory", s))?
        {
            if ev.r#type == BuildHistoryEventType::Deleted as i32 {
                continue;
            }
            let Some(r) = ev.record else { continue };
            out.push(HistoryRecord {
                build_ref: r.r#ref,
                frontend: r.frontend,
                frontend_attrs: r.frontend_attrs.into_iter().collect(),
                created_at: timestamp(r.created_at.as_ref()),
                completed_at: timestamp(r.completed_at.as_ref()),
                error: r.error.map(|e| (e.code, e.message)),
                num_total_steps: r.num_total_steps,
                num_completed_steps: r.num_completed_steps,
                num_cached_steps: r.num_cached_steps,
                num_warnings: r.num_warnings,
                result: r.result.as_ref().map(RecordResult::from),
                results: r
                    .results
                    .iter()
                    .map(|(p, res)| (p.clone(), RecordResult::from(res)))
                    .collect(),
                current_timestamp: now,
            });
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(out)
    }

    /// Deletes the build record `build_ref` (`UpdateBuildHistory` with `Delete`).
    ///
    /// # Errors
    /// [`Error::Rpc`] with the daemon's text, e.g. `lease "ref_x": not found` for an unknown
    /// reference.
    pub async fn delete_history(&self, build_ref: &str) -> Result<()> {
        self.control
            .clone()
            .update_build_history(UpdateBuildHistoryRequest {
                r#ref: build_ref.to_owned(),
                delete: true,
                ..UpdateBuildHistoryRequest::default()
            })
            .await
            .map_err(|s| Error::rpc("UpdateBuildHistory", s))?;
        Ok(())
    }

    /// Replays the progress of the recorded build `build_ref` (the daemon streams the record's
    /// saved status log through `Status`), calling `on_progress` as a build does.
    ///
    /// # Errors
    /// [`Error::Rpc`] when the call or the stream fails.
    pub async fn history_logs<F>(&self, build_ref: &str, mut on_progress: F) -> Result<()>
    where
        F: FnMut(&SolveStatus, &[ProgressEvent]),
    {
        let mut stream = self
            .control
            .clone()
            .status(StatusRequest {
                r#ref: build_ref.to_owned(),
            })
            .await
            .map_err(|s| Error::rpc("Status", s))?
            .into_inner();
        let mut tracker = ProgressTracker::new();
        while let Some(resp) = stream
            .message()
            .await
            .map_err(|s| Error::rpc("Status", s))?
        {
            let events = tracker.update(&resp);
            on_progress(&SolveStatus::from_response(&resp), &events);
        }
        Ok(())
    }

    /// A blob of the daemon's content store, e.g. a record's provenance attestation.
    ///
    /// # Errors
    /// [`Error::Rpc`] when the content store fails (an unknown digest included).
    pub async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        self.read_content(digest).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_nanoseconds_and_offsets() {
        let t = parse_rfc3339("2026-12-05T05:26:54.669168931Z").unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_796_448_414);
        assert_eq!(d.subsec_nanos(), 669_168_931);
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00.5Z")
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_millis(),
            500
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2026-12-05"), None);
    }

    #[test]
    fn results_keep_the_daemons_index_order() {
        let d = |digest: &str| ProtoDescriptor {
            digest: digest.to_owned(),
            ..ProtoDescriptor::default()
        };
        let info = BuildResultInfo {
            results: [(1, d("sha256:b")), (0, d("sha256:a"))]
                .into_iter()
                .collect(),
            attestations: vec![d("sha256:p")],
            ..BuildResultInfo::default()
        };
        let r = RecordResult::from(&info);
        let digests: Vec<&str> = r.results.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(digests, ["sha256:a", "sha256:b"]);
        assert_eq!(r.attestations[0].digest, "sha256:p");
    }
}
