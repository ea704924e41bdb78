//! Segments of an environment. Changing one recompiles the environment, so every flag
//! using it changes with it; deleting one that a flag still uses is refused.

use flagd_core::Segment;
use serde::Serialize;

use super::flags::check_if_match;
use super::{Service, Subject, to_json};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::StoredSegment;

/// A segment as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentView {
    /// Environment name.
    pub environment: String,
    /// The segment.
    #[serde(flatten)]
    pub segment: Segment,
    /// Change sequence number of its last write (the ETag without quotes).
    pub version: i64,
    /// Present, as `true`, on the answer to a replacement that changed nothing: no new
    /// version, no audit event.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

impl SegmentView {
    /// The fields a view adds to the segment: a `PUT` ignores them, so that what a `GET` or
    /// a write answered may be sent back as is.
    pub const READ_ONLY: [&'static str; 3] = ["environment", "version", "unchanged"];
}

impl From<StoredSegment> for SegmentView {
    fn from(s: StoredSegment) -> Self {
        Self { environment: s.environment, segment: s.segment, version: s.version, unchanged: false }
    }
}

impl Service {
    /// Every segment of an environment.
    pub async fn segments(&self, env: &str) -> Result<Vec<SegmentView>, ApiError> {
        let mut tx = self.store.begin_read().await?;
        super::require_environment(tx.as_mut(), env).await?;
        Ok(tx.segments(env).await?.into_iter().map(Into::into).collect())
    }

    /// One segment.
    pub async fn segment(&self, env: &str, key: &str) -> Result<SegmentView, ApiError> {
        let mut tx = self.store.begin_read().await?;
        super::require_environment(tx.as_mut(), env).await?;
        let found = tx.segment(env, key).await?.ok_or_else(|| ApiError::segment_not_found(env, key))?;
        Ok(found.into())
    }

    /// Creates (`create`: refuses an existing key) or replaces a segment.
    pub async fn put_segment(
        &self,
        actor: &Principal,
        env: &str,
        segment: Segment,
        create: bool,
        if_match: Option<i64>,
    ) -> Result<SegmentView, ApiError> {
        super::check_keys([], [segment.key.as_str()], Some(env))?;
        let mut write = self.begin(actor, None).await?;
        write.require_environment(env).await?;
        let key = segment.key.clone();
        let current = write.tx.segment(env, &key).await?;
        match (&current, create) {
            (Some(_), true) => {
                return Err(ApiError::already_exists(format!("segment `{key}` already exists in `{env}`")));
            }
            (None, false) => return Err(ApiError::segment_not_found(env, &key)),
            (Some(c), false) => check_if_match(if_match, c.version, || &c.segment)?,
            (None, true) => {}
        }
        // As for configurations: a replacement by the same segment is acknowledged without
        // a version, an audit event or a recompile; dropping the write rolls it back.
        if let Some(c) = current.as_ref().filter(|c| c.segment == segment) {
            return Ok(SegmentView { unchanged: true, ..c.clone().into() });
        }
        let stored = StoredSegment { environment: env.to_owned(), segment, version: write.seq() };
        write.tx.put_segment(&stored).await?;
        let action = if create { "segment.create" } else { "segment.update" };
        let subject = Subject { environment: Some(env), segment: Some(&key), ..Subject::default() };
        write.audit(action, subject, current.and_then(|c| to_json(&c.segment)), to_json(&stored.segment));
        write.touch(env);
        self.commit(write).await?;
        Ok(stored.into())
    }

    /// Deletes a segment; refused (409, naming them) while flags' rules use it. Given
    /// `if_match`, only if the segment is still at that version.
    pub async fn delete_segment(
        &self,
        actor: &Principal,
        env: &str,
        key: &str,
        if_match: Option<i64>,
    ) -> Result<(), ApiError> {
        let mut write = self.begin(actor, None).await?;
        write.require_environment(env).await?;
        let current = write.tx.segment(env, key).await?.ok_or_else(|| ApiError::segment_not_found(env, key))?;
        check_if_match(if_match, current.version, || &current.segment)?;
        // Said before the compile would: it reports an unknown segment in each rule, which
        // reads as if the segment were already gone.
        let users: Vec<String> = write
            .tx
            .configs(env)
            .await?
            .into_iter()
            .filter(|c| c.config.rules.iter().any(|r| r.segments.iter().any(|s| s == key)))
            .map(|c| c.flag)
            .collect();
        if !users.is_empty() {
            return Err(ApiError::segment_in_use(env, key, &users));
        }
        write.tx.delete_segment(env, key).await?;
        let subject = Subject { environment: Some(env), segment: Some(key), ..Subject::default() };
        write.audit("segment.delete", subject, to_json(&current.segment), None);
        write.touch(env);
        self.commit(write).await?;
        Ok(())
    }
}
