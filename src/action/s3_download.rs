//! `s3.download`: streams one object from an S3-compatible store (AWS, or any
//! endpoint that speaks the S3 API with SigV4) to a file, with progress. Credentials
//! come from secrets and are never stored or printed. The file is written beside its
//! target and renamed into place when complete, so a partial download is never seen.

use std::io::Write;
use std::path::PathBuf;

use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use schemars::JsonSchema;
use serde::Deserialize;

use super::spec::action_spec;
use super::{ActionCtx, ActionError, ActionFuture, ActionOutputs, Outputs};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct S3Params {
    /// The S3 endpoint, for S3-compatible servers (default: AWS for the region).
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// The file to write.
    pub to: String,
    /// Use `{{ secrets.name }}`.
    pub access_key_id: Option<String>,
    /// Use `{{ secrets.name }}`.
    pub secret_access_key: Option<String>,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl S3Params {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.bucket.is_empty() || self.key.is_empty() || self.to.is_empty() {
            return Err("`bucket`, `key` and `to` must not be empty".into());
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err("give both `access_key_id` and `secret_access_key`, or neither".into());
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(format!("`endpoint` must be an http:// or https:// URL, got `{endpoint}`"));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let at = self.endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
        format!("s3://{}/{}{at}", self.bucket, self.key)
    }
}

fn run(ctx: ActionCtx, params: S3Params) -> ActionFuture {
    Box::pin(async move {
        let what = params.describe();
        let mut builder = AmazonS3Builder::new()
            .with_region(&params.region)
            .with_bucket_name(&params.bucket)
            .with_retry(object_store::RetryConfig { max_retries: 2, ..Default::default() });
        if let Some(endpoint) = &params.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        match (&params.access_key_id, &params.secret_access_key) {
            (Some(id), Some(secret)) => builder = builder.with_access_key_id(id).with_secret_access_key(secret),
            _ => builder = builder.with_skip_signature(true),
        }
        let store = builder.build().map_err(|e| ActionError::new(format!("cannot use {what}: {e}")))?;
        let key = object_store::path::Path::from(params.key.as_str());
        let result = store.get(&key).await.map_err(|e| ActionError::new(format!("downloading {what} failed: {e}")))?;
        let size = result.meta.size;
        let etag = result.meta.e_tag.clone().unwrap_or_default();
        let target = PathBuf::from(&params.to);
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ActionError::new(format!("cannot create `{}`: {e}", dir.display())))?;
        }
        let partial = target.with_file_name(format!(
            ".{}.partial-{}",
            target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut file = std::fs::File::create(&partial)
            .map_err(|e| ActionError::new(format!("cannot create `{}`: {e}", partial.display())))?;
        let mut stream = result.into_stream();
        let mut written: u64 = 0;
        let outcome: Result<(), ActionError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ActionError::new(format!("downloading {what} failed: {e}")))?;
                file.write_all(&chunk)
                    .map_err(|e| ActionError::new(format!("writing `{}`: {e}", partial.display())))?;
                written += chunk.len() as u64;
                if size > 0 {
                    ctx.progress.report(written as f64 / size as f64);
                }
            }
            file.sync_all().map_err(|e| ActionError::new(format!("writing `{}`: {e}", partial.display())))?;
            std::fs::rename(&partial, &target)
                .map_err(|e| ActionError::new(format!("cannot move into `{}`: {e}", target.display())))
        }
        .await;
        if let Err(e) = outcome {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        ctx.log.line(&format!("downloaded {what} ({written} bytes) to {}", target.display()));
        let mut out = ActionOutputs::new();
        out.insert("path".into(), params.to.clone().into());
        out.insert("bytes".into(), written.into());
        out.insert("etag".into(), etag.into());
        Ok(out)
    })
}

action_spec!(
    S3Params,
    name: "s3.download",
    summary: "Download one object from an S3-compatible store to a file (SigV4; credentials from secrets).",
    outputs: Outputs::Fixed(&["path", "bytes", "etag"]),
    example: "endpoint: http://127.0.0.1:8333\nbucket: uploads\nkey: sites/blog.tar.gz\nto: /tmp/work/blog.tar.gz\naccess_key_id: \"{{ secrets.s3_key }}\"\nsecret_access_key: \"{{ secrets.s3_secret }}\"",
    run: run,
    writes: |p: &S3Params| vec![PathBuf::from(&p.to)],
);
