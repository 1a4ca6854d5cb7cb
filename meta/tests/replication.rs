//! What a replicated log needs of the namespace: each entry applied with its stamp, a
//! change sent twice applied once, and a snapshot that makes another replica the same.

use hive_meta::{Context, Durability, Errno, InodeId, Logged, Namespace, Nanos, Once, Op};

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hive-replication-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn ctx(now: i64) -> Context {
    Context {
        uid: 0,
        gid: 0,
        now: Nanos(now),
        umask: 0,
    }
}

fn mkdir(name: &str) -> Op {
    Op::Mkdir {
        parent: InodeId::ROOT,
        name: name.as_bytes().to_vec(),
        mode: 0o755,
    }
}

/// The answer bytes a test records: the errno, or 0 for success.
fn answer(result: &Result<hive_meta::Outcome, Errno>) -> Vec<u8> {
    vec![result.as_ref().err().map_or(0, |e| e.code() as u8)]
}

fn once(seq: u64, acked: u64) -> Option<Once> {
    Some(Once {
        session: 7,
        seq,
        acked,
    })
}

#[test]
fn a_change_sent_twice_is_applied_once_and_its_answer_is_kept_until_acknowledged() {
    let dir = temp("once");
    let ns = Namespace::open(&dir, Durability::Buffered).expect("open");
    let start = Op::RenewSession {
        session: 7,
        ttl: Nanos(60_000_000_000),
        start: true,
    };
    ns.apply_logged(ctx(1), &start, b"s1", once(1, 1), answer)
        .expect("start");
    let first = ns
        .apply_logged(ctx(2), &mkdir("a"), b"s2", once(2, 1), answer)
        .expect("first");
    assert!(matches!(first, Logged::Applied(Ok(_))), "{first:?}");
    // Sent again (a timeout, a new leader): the answer given then, nothing applied.
    let again = ns
        .apply_logged(ctx(3), &mkdir("a"), b"s3", once(2, 1), answer)
        .expect("again");
    assert_eq!(again, Logged::Repeated(vec![0]));
    assert_eq!(ns.stamp().expect("stamp"), Some(b"s3".to_vec()));
    // A failure is remembered too, and the stamp moves on though nothing changed.
    let exists = ns
        .apply_logged(ctx(4), &mkdir("a"), b"s4", once(3, 1), answer)
        .expect("exists");
    assert_eq!(exists, Logged::Applied(Err(Errno::Exist)));
    assert_eq!(ns.stamp().expect("stamp"), Some(b"s4".to_vec()));
    assert_eq!(
        ns.apply_logged(ctx(5), &mkdir("x"), b"s5", once(3, 1), answer)
            .expect("repeat"),
        Logged::Repeated(vec![Errno::Exist.code() as u8])
    );
    // Once the client has every answer below 4, those are forgotten.
    ns.apply_logged(ctx(6), &mkdir("b"), b"s6", once(4, 4), answer)
        .expect("b");
    let forgotten = ns
        .apply_logged(ctx(7), &mkdir("c"), b"s7", once(2, 4), answer)
        .expect("c");
    assert!(matches!(forgotten, Logged::Applied(Ok(_))), "{forgotten:?}");
    // Ending the session forgets the rest.
    ns.apply_logged(ctx(8), &Op::EndSession { session: 7 }, b"s8", None, answer)
        .expect("end");
    let after = ns
        .apply_logged(ctx(9), &mkdir("b"), b"s9", once(4, 4), answer)
        .expect("after end");
    assert_eq!(after, Logged::Applied(Err(Errno::Exist)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_snapshot_makes_another_replica_the_same_and_a_bad_one_changes_nothing() {
    let (a_dir, b_dir) = (temp("export-a"), temp("export-b"));
    let a = Namespace::open(&a_dir, Durability::Buffered).expect("a");
    let b = Namespace::open(&b_dir, Durability::Buffered).expect("b");
    for (i, name) in ["one", "two", "three"].into_iter().enumerate() {
        a.apply_logged(ctx(i as i64), &mkdir(name), &[i as u8], None, answer)
            .expect("mkdir");
    }
    b.apply(ctx(1), &mkdir("only-on-b"))
        .expect("b's own")
        .expect("made");
    let (snapshot, stamp) = a.export().expect("export");
    assert_eq!(stamp, Some(vec![2]));
    let before = b.export().expect("b before").0;
    for cut in [1, snapshot.len() / 2, snapshot.len() - 1] {
        assert!(
            b.import(&snapshot[..cut]).is_err(),
            "a snapshot cut at {cut}"
        );
        assert_eq!(b.export().expect("b unchanged").0, before);
    }
    b.import(&snapshot).expect("import");
    assert_eq!(b.export().expect("b after"), a.export().expect("a"));
    assert_eq!(
        b.lookup(InodeId::ROOT, b"only-on-b").expect("lookup"),
        Err(Errno::NoEnt)
    );
    assert!(b.lookup(InodeId::ROOT, b"two").expect("lookup").is_ok());
    let _ = std::fs::remove_dir_all(&a_dir);
    let _ = std::fs::remove_dir_all(&b_dir);
}
