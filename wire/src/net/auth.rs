//! Who may do what: one pure function every service asks before acting.
//!
//! | operation | admin | node | client |
//! | --- | --- | --- | --- |
//! | cluster administration (tokens, revocation, volumes, membership) | yes | no | no |
//! | node-to-node work (replication, repair, rebalance, map updates) | yes | yes | no |
//! | shard reads and writes on a node | yes | yes | yes |
//! | mount, read or write a volume | yes | no | if granted |
//!
//! A client's certificate grants volumes by name (`hive-volume://<name>`), or all of them
//! (`hive-volume://*`); a client with no grant may use no volume. Shard I/O is open to
//! clients because they write and read shards themselves; shards are named by the hash
//! of their content, so holding an id already means knowing what the chunk is.

use super::pki::{ALL_VOLUMES, Role};
use super::rpc::{Peer, Refusal, code};

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    /// Create tokens, revoke certificates, create or delete volumes, change membership.
    Administer,
    /// Node-to-node work.
    NodeInternal,
    /// Put or get shards on a node.
    ShardIo,
    /// Delete shards on a node: garbage collection, which runs on nodes. Not even an
    /// administrator deletes shards by hand.
    DeleteShards,
    /// Use a volume.
    Volume {
        /// Its name.
        name: &'a str,
        /// How.
        access: Access,
    },
}

/// How a volume is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Mount it.
    Mount,
    /// Read files.
    Read,
    /// Write files.
    Write,
}

/// Allows or refuses `op` for `peer`, saying why when refused.
pub fn authorise(peer: &Peer, op: Operation<'_>) -> Result<(), Refusal> {
    let Some(identity) = peer.identity else {
        return Err(Refusal::new(
            code::FORBIDDEN,
            "this operation needs a certificate",
        ));
    };
    let allowed = match (identity.role, op) {
        (role, Operation::DeleteShards) => role == Role::Node,
        (Role::Admin, _) => true,
        (Role::Node, Operation::NodeInternal | Operation::ShardIo) => true,
        (Role::Client, Operation::ShardIo) => true,
        (Role::Client, Operation::Volume { name, .. }) => peer
            .volumes
            .iter()
            .any(|granted| granted == ALL_VOLUMES || granted == name),
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    let what = match op {
        Operation::Administer => "administer the cluster".to_string(),
        Operation::NodeInternal => "do node-to-node work".to_string(),
        Operation::ShardIo => "read or write shards".to_string(),
        Operation::DeleteShards => {
            "delete shards (only garbage collection on a node does)".to_string()
        }
        Operation::Volume { name, access } => format!("{access:?} volume {name:?}").to_lowercase(),
    };
    Err(Refusal::new(
        code::FORBIDDEN,
        format!("{identity} ({} role) may not {what}", identity.role),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::net::pki::Identity;

    fn peer(role: Role, volumes: &[&str]) -> Peer {
        Peer {
            identity: Some(Identity { role, id: 1 }),
            volumes: volumes
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .into(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        }
    }

    #[test]
    fn the_matrix_holds() {
        let photos = Operation::Volume {
            name: "photos",
            access: Access::Write,
        };
        let admin = peer(Role::Admin, &[]);
        let node = peer(Role::Node, &[]);
        let scoped = peer(Role::Client, &["photos"]);
        let everything = peer(Role::Client, &[ALL_VOLUMES]);
        let nothing = peer(Role::Client, &[]);
        for op in [
            Operation::Administer,
            Operation::NodeInternal,
            Operation::ShardIo,
            photos,
        ] {
            assert!(authorise(&admin, op).is_ok());
        }
        assert!(authorise(&node, Operation::NodeInternal).is_ok());
        assert!(authorise(&node, photos).is_err());
        assert!(authorise(&node, Operation::Administer).is_err());
        assert!(authorise(&scoped, photos).is_ok());
        assert!(authorise(&everything, photos).is_ok());
        let other = Operation::Volume {
            name: "videos",
            access: Access::Read,
        };
        let err = authorise(&scoped, other).expect_err("not granted");
        assert!(
            err.message.contains("may not read volume \"videos\""),
            "{err}"
        );
        assert!(authorise(&nothing, photos).is_err());
        assert!(authorise(&scoped, Operation::ShardIo).is_ok());
        assert!(authorise(&scoped, Operation::NodeInternal).is_err());
        assert!(authorise(&node, Operation::DeleteShards).is_ok());
        for who in [&admin, &scoped, &everything] {
            let err = authorise(who, Operation::DeleteShards).expect_err("only nodes delete");
            assert!(err.message.contains("may not delete shards"), "{err}");
        }
        let anonymous = Peer {
            identity: None,
            volumes: Arc::from(Vec::<String>::new()),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        };
        assert!(authorise(&anonymous, Operation::ShardIo).is_err());
    }
}
