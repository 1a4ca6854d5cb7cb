//! The `hive` command line: init, tokens and revocation, run as a user would.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::SystemTime;

use hive_wire::net::{ClusterCa, JoinToken, Role, TokenKey};

fn hive(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hive"))
        .args(args)
        .output()
        .expect("run hive")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hive-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("file").permissions().mode() & 0o777
}

#[test]
fn init_writes_secrets_0600_and_refuses_to_run_twice() {
    let dir = scratch("init");
    let d = dir.to_str().expect("utf-8 path");
    let out = hive(&["init", "--dir", d, "--name", "test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CA fingerprint"), "{stdout}");
    for secret in ["ca.key", "token.key", "admin.key"] {
        assert_eq!(mode(&dir.join(secret)), 0o600, "{secret}");
        let text = std::fs::read_to_string(dir.join(secret)).expect("read");
        assert!(!stdout.contains(text.trim()), "{secret} was printed");
    }
    let ca = ClusterCa::from_pem(
        &std::fs::read_to_string(dir.join("ca.pem")).expect("ca.pem"),
        &std::fs::read_to_string(dir.join("ca.key")).expect("ca.key"),
    )
    .expect("the CA loads back");
    assert!(stdout.contains(&ca.fingerprint().to_string()));
    let again = hive(&["init", "--dir", d]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn token_create_prints_a_token_the_cluster_accepts() {
    let dir = scratch("token");
    let d = dir.to_str().expect("utf-8 path");
    assert!(hive(&["init", "--dir", d]).status.success());
    let out = hive(&[
        "token", "create", "--dir", d, "--role", "client", "--ttl", "2h", "--volume", "photos",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let key = TokenKey::from_hex(&std::fs::read_to_string(dir.join("token.key")).expect("key"))
        .expect("key");
    let ca = ClusterCa::from_pem(
        &std::fs::read_to_string(dir.join("ca.pem")).expect("ca.pem"),
        &std::fs::read_to_string(dir.join("ca.key")).expect("ca.key"),
    )
    .expect("ca");
    let checked =
        JoinToken::verify(&token, &key, ca.fingerprint(), SystemTime::now()).expect("valid token");
    assert_eq!(checked.role, Role::Client);
    assert_eq!(checked.volume.as_deref(), Some("photos"));
    for bad in [
        vec!["--role", "wizard"],
        vec!["--role", "node", "--ttl", "forever"],
        vec!["--role", "node", "--volume", "x"],
    ] {
        let mut args = vec!["token", "create", "--dir", d];
        args.extend(bad.iter().copied());
        let out = hive(&args);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(!out.stderr.is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cert_revoke_adds_to_the_revocation_list() {
    let dir = scratch("revoke");
    let d = dir.to_str().expect("utf-8 path");
    assert!(hive(&["init", "--dir", d]).status.success());
    let out = hive(&["cert", "revoke", "--dir", d, "node/000000000000002a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = hive_wire::net::tls::Revocations::parse(
        &std::fs::read_to_string(dir.join("revoked")).expect("list"),
    )
    .expect("parses");
    assert!(list.is_revoked(&"node/000000000000002a".parse().expect("identity")));
    let out = hive(&["cert", "revoke", "--dir", d, "node/42"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an identity"));
    let out = hive(&[
        "token",
        "create",
        "--dir",
        "/nonexistent/hive",
        "--role",
        "node",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("hive init"));
    let _ = std::fs::remove_dir_all(&dir);
}
