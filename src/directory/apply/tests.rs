//! Tests of `Directory::apply`: each command's success, its refusals (which must leave the
//! directory unchanged), bulk import, and that the returned changes rebuild the same state.

use std::collections::{BTreeMap, BTreeSet};

use crate::directory::{
    Alias, Applied, Command, Directory, DirectoryError, ItemKind, Kind, List, Outcome, User,
};

const HASH: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
const ARGON: &str =
    "$argon2id$v=19$m=4096,t=3,p=1$c29tZXNhbHRzYWx0$6pVKRFxOk3UokGCeAncuGBUcjK8nGcczSAnET2sIboo";

fn s(text: &str) -> String {
    text.to_string()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|t| t.to_string()).collect()
}

fn ok(dir: &mut Directory, cmd: Command) -> Applied {
    dir.apply(&cmd).unwrap_or_else(|e| panic!("{cmd:?} refused: {e}"))
}

/// example.org with alice, bob, sales → alice, team → [alice, bob]; other.org empty.
fn fixture() -> Directory {
    let mut dir = Directory::new();
    for cmd in [
        Command::AddDomain { name: s("Example.org") },
        Command::AddDomain { name: s("other.org") },
        Command::AddUser(User::new("Alice@example.org", HASH)),
        Command::AddUser(User::new("bob@example.org", HASH)),
        Command::AddAlias {
            address: s("sales@example.org"),
            targets: strings(&["alice@example.org"]),
        },
        Command::AddList {
            address: s("team@example.org"),
            members: strings(&["alice@example.org", "bob@example.org"]),
        },
    ] {
        ok(&mut dir, cmd);
    }
    dir
}

fn update(address: &str) -> Command {
    Command::UpdateUser {
        address: s(address),
        display_name: None,
        quota_bytes: None,
        mail_host: None,
        enabled: None,
        set_prefs: BTreeMap::new(),
        remove_prefs: vec![],
    }
}

#[test]
fn refused_commands_change_nothing() {
    let mut bad_user = User::new("carol@example.org", HASH);
    bad_user.display_name = s("Carol\n");
    let mut bad_host = User::new("carol@example.org", HASH);
    bad_host.mail_host = s("store 2");
    let mut bad_pref = User::new("carol@example.org", HASH);
    bad_pref.prefs.insert(s("sig nature"), s("x"));
    let mut both_prefs = update("alice@example.org");
    if let Command::UpdateUser {
        set_prefs,
        remove_prefs,
        ..
    } = &mut both_prefs
    {
        set_prefs.insert(s("signature"), s("x"));
        remove_prefs.push(s("signature"));
    }
    let mut bad_name = update("alice@example.org");
    if let Command::UpdateUser { display_name, .. } = &mut bad_name {
        *display_name = Some(s("a\u{7}"));
    }
    let cases: Vec<(Command, &str)> = vec![
        (Command::AddDomain { name: s("EXAMPLE.org") }, "already exists"),
        (Command::AddDomain { name: s("bad domain") }, "invalid domain name"),
        (Command::RemoveDomain { name: s("example.org") }, "still holds 2 user(s), 1 alias(es) and 1 list(s)"),
        (Command::RemoveDomain { name: s("nowhere.org") }, "not served here"),
        (Command::SetCatchAll { domain: s("nowhere.org"), target: None }, "not served here"),
        (Command::SetCatchAll { domain: s("example.org"), target: Some(s("ghost@example.org")) }, "ghost@example.org does not exist"),
        (Command::SetCatchAll { domain: s("example.org"), target: Some(s("nope")) }, "missing '@'"),
        (Command::AddUser(User::new("ALICE@example.org", HASH)), "already taken by an existing user"),
        (Command::AddUser(User::new("sales@example.org", HASH)), "already taken by an existing alias"),
        (Command::AddUser(User::new("team@example.org", HASH)), "already taken by an existing list"),
        (Command::AddUser(User::new("carol@nowhere.org", HASH)), "domain nowhere.org is not served here"),
        (Command::AddUser(User::new("carol", HASH)), "invalid address"),
        (Command::AddUser(User::new("carol@example.org", "plaintext")), "password hash for carol@example.org refused"),
        (Command::AddUser(User::new("carol@example.org", "{MD5}abc")), "unsupported password scheme {MD5}"),
        (Command::AddUser(bad_user), "invalid display_name"),
        (Command::AddUser(bad_host), "invalid mail_host"),
        (Command::AddUser(bad_pref), "invalid prefs"),
        (Command::RemoveUser { address: s("alice@example.org") }, "still used by alias sales@example.org, list team@example.org"),
        (Command::RemoveUser { address: s("ghost@example.org") }, "no user ghost@example.org"),
        (Command::RemoveUser { address: s("sales@example.org") }, "no user sales@example.org"),
        (Command::RemoveUser { address: s("bad address") }, "invalid address"),
        (Command::SetPasswordHash { address: s("ghost@example.org"), hash: s(HASH) }, "no user"),
        (Command::SetPasswordHash { address: s("bob@example.org"), hash: s("$2y$05$x") }, "unsupported password scheme"),
        (Command::RehashPassword { address: s("bob@example.org"), old_hash: s(HASH), new_hash: s("junk") }, "refused"),
        (update("ghost@example.org"), "no user"),
        (both_prefs, "both set and removed"),
        (bad_name, "invalid display_name"),
        (Command::AddAlias { address: s("bob@example.org"), targets: strings(&["x@ext.net"]) }, "existing user"),
        (Command::AddAlias { address: s("x@example.org"), targets: vec![] }, "at least one target"),
        (Command::AddAlias { address: s("x@nowhere.org"), targets: strings(&["x@ext.net"]) }, "not served here"),
        (Command::AddAlias { address: s("x@example.org"), targets: strings(&["ghost@example.org"]) }, "ghost@example.org does not exist"),
        (Command::AddAlias { address: s("x@example.org"), targets: strings(&["ok@ext.net", "bad@"]) }, "invalid address \"bad@\""),
        (Command::AddAlias { address: s("x@example.org"), targets: strings(&["X@example.org"]) }, "mail loop (x@example.org -> x@example.org)"),
        (Command::AddAlias { address: s("x@example.org"), targets: strings(&["x+self@example.org"]) }, "mail loop"),
        (Command::RemoveAlias { address: s("alice@example.org") }, "no alias alice@example.org"),
        (Command::AddList { address: s("sales@example.org"), members: vec![] }, "existing alias"),
        (Command::AddList { address: s("l@example.org"), members: strings(&["ghost@other.org"]) }, "ghost@other.org does not exist"),
        (Command::AddList { address: s("l@example.org"), members: strings(&["l@example.org"]) }, "mail loop"),
        (Command::ListAddMembers { address: s("sales@example.org"), members: vec![] }, "no list sales@example.org"),
        (Command::ListAddMembers { address: s("team@example.org"), members: strings(&["team@example.org"]) }, "mail loop"),
        (Command::ListAddMembers { address: s("team@example.org"), members: strings(&["nope"]) }, "invalid address"),
        (Command::ListRemoveMembers { address: s("ghost@example.org"), members: vec![] }, "no list"),
        (Command::RemoveList { address: s("sales@example.org") }, "no list"),
    ];
    for (cmd, want) in cases {
        let mut dir = fixture();
        let before = dir.clone();
        let err = dir
            .apply(&cmd)
            .expect_err(&format!("{cmd:?} should be refused"));
        assert!(err.to_string().contains(want), "{cmd:?}: {err}");
        assert_eq!(dir, before, "{cmd:?} changed the directory");
    }
}

#[test]
fn loops_through_other_entries_are_refused_with_their_path() {
    let mut dir = fixture();
    ok(&mut dir, Command::AddList {
        address: s("outer@example.org"),
        members: strings(&["team@example.org"]),
    });
    ok(&mut dir, Command::AddAlias {
        address: s("all@example.org"),
        targets: strings(&["outer+x@example.org"]),
    });
    let before = dir.clone();
    let err = dir
        .apply(&Command::ListAddMembers {
            address: s("team@example.org"),
            members: strings(&["ext@ext.net", "all@example.org"]),
        })
        .unwrap_err();
    assert_eq!(
        err,
        DirectoryError::Loop {
            owner: s("team@example.org"),
            path: strings(&[
                "team@example.org",
                "all@example.org",
                "outer+x@example.org",
                "team@example.org"
            ]),
        }
    );
    assert_eq!(dir, before);
}

#[test]
fn successful_commands() {
    let mut dir = fixture();
    assert_eq!(dir.user("ALICE@Example.org").unwrap().address, "alice@example.org");

    let a = ok(&mut dir, Command::SetCatchAll {
        domain: s("EXAMPLE.ORG"),
        target: Some(s("Sales@example.org")),
    });
    assert_eq!(a.outcome, Outcome::Done);
    assert_eq!(a.changes.len(), 1);
    assert_eq!(a.changes[0].key, "d/example.org");
    assert_eq!(dir.domain("example.org").unwrap().catch_all.as_deref(), Some("sales@example.org"));
    let err = dir.apply(&Command::RemoveAlias { address: s("sales@example.org") }).unwrap_err();
    assert!(err.to_string().contains("catch-all of example.org"), "{err}");
    ok(&mut dir, Command::SetCatchAll { domain: s("example.org"), target: None });

    ok(&mut dir, Command::SetPasswordHash { address: s("bob@example.org"), hash: s(ARGON) });
    assert_eq!(dir.user("bob@example.org").unwrap().password_hash, ARGON);

    // A rehash only lands while the stored hash is still the one the login verified.
    let stale = ok(&mut dir, Command::RehashPassword {
        address: s("bob@example.org"),
        old_hash: s(HASH),
        new_hash: s(HASH),
    });
    assert_eq!((stale.outcome, stale.changes.len()), (Outcome::Unchanged, 0));
    let gone = ok(&mut dir, Command::RehashPassword {
        address: s("ghost@example.org"),
        old_hash: s(HASH),
        new_hash: s(ARGON),
    });
    assert_eq!(gone.outcome, Outcome::Unchanged);
    let fresh = ok(&mut dir, Command::RehashPassword {
        address: s("alice@example.org"),
        old_hash: s(HASH),
        new_hash: s(ARGON),
    });
    assert_eq!((fresh.outcome, fresh.changes[0].key.as_str()), (Outcome::Done, "u/alice@example.org"));
    assert_eq!(dir.user("alice@example.org").unwrap().password_hash, ARGON);

    let mut up = update("Alice@example.org");
    if let Command::UpdateUser { display_name, quota_bytes, mail_host, enabled, set_prefs, .. } = &mut up {
        *display_name = Some(s("Alice Smith"));
        *quota_bytes = Some(1 << 30);
        *mail_host = Some(s("Store-2"));
        *enabled = Some(false);
        set_prefs.insert(s("signature"), s("-- \nAlice"));
        set_prefs.insert(s("trash_folder"), s("Trash"));
    }
    ok(&mut dir, up);
    let mut up = update("alice@example.org");
    if let Command::UpdateUser { remove_prefs, .. } = &mut up {
        remove_prefs.push(s("trash_folder"));
        remove_prefs.push(s("never_set"));
    }
    ok(&mut dir, up);
    let alice = dir.user("alice@example.org").unwrap();
    assert_eq!(alice.display_name, "Alice Smith");
    assert_eq!((alice.quota_bytes, alice.mail_host.as_str(), alice.enabled), (1 << 30, "store-2", false));
    assert_eq!(alice.prefs.keys().collect::<Vec<_>>(), ["signature"]);
    assert_eq!(ok(&mut dir, update("alice@example.org")).outcome, Outcome::Unchanged);

    let add = ok(&mut dir, Command::ListAddMembers {
        address: s("team@example.org"),
        members: strings(&["bob@example.org", "Ext@Ext.net", "ext@ext.net", "sales@example.org"]),
    });
    assert_eq!(add.outcome, Outcome::Done);
    assert_eq!(
        dir.list("team@example.org").unwrap().members,
        strings(&["alice@example.org", "bob@example.org", "ext@ext.net", "sales@example.org"])
    );
    let again = ok(&mut dir, Command::ListAddMembers {
        address: s("team@example.org"),
        members: strings(&["bob@example.org"]),
    });
    assert_eq!(again.outcome, Outcome::Unchanged);
    ok(&mut dir, Command::ListRemoveMembers {
        address: s("team@example.org"),
        members: strings(&["ALICE@example.org", "bob@example.org", "not-a-member@x.org"]),
    });
    assert_eq!(dir.list("team@example.org").unwrap().members, strings(&["ext@ext.net", "sales@example.org"]));

    // Tear everything down in dependency order; the domain goes last.
    for cmd in [
        Command::RemoveList { address: s("team@example.org") },
        Command::RemoveAlias { address: s("sales@example.org") },
        Command::RemoveUser { address: s("alice@example.org") },
        Command::RemoveUser { address: s("bob@example.org") },
        Command::RemoveDomain { name: s("example.org") },
    ] {
        let a = ok(&mut dir, cmd);
        assert_eq!(a.changes.len(), 1);
        assert_eq!(a.changes[0].value, None);
    }
    assert_eq!(dir.counts().domains, 1);
    assert_eq!(dir.users(None).count(), 0);
}

#[test]
fn subaddress_targets_count_as_existing_and_as_references() {
    let mut dir = fixture();
    ok(&mut dir, Command::AddAlias {
        address: s("tagged@example.org"),
        targets: strings(&["bob+news@example.org"]),
    });
    let err = dir.apply(&Command::RemoveUser { address: s("bob@example.org") }).unwrap_err();
    assert!(err.to_string().contains("alias tagged@example.org"), "{err}");
}

#[test]
fn import_applies_good_items_and_reports_bad_ones() {
    let mut dir = fixture();
    let mut disabled = User::new("Dan@example.org", HASH);
    disabled.enabled = false;
    let cmd = Command::ImportUsers {
        users: vec![
            User::new("carol@example.org", HASH),
            User::new("alice@example.org", HASH),
            User::new("erin@new.org", "!"),
            User::new("frank@example.org", "{MD5}x"),
            disabled,
            User::new("carol@example.org", HASH),
        ],
        aliases: vec![
            Alias { address: s("c@example.org"), targets: strings(&["carol@example.org"]) },
            Alias { address: s("f@example.org"), targets: strings(&["frank@example.org"]) },
            Alias { address: s("e@new.org"), targets: strings(&["erin@new.org"]) },
        ],
        create_domains: false,
    };
    let before = dir.clone();
    let a = ok(&mut dir, cmd.clone());
    let Outcome::Import { applied, domains_created, errors } = &a.outcome else {
        panic!("{:?}", a.outcome);
    };
    assert_eq!(*applied, 3);
    assert!(domains_created.is_empty());
    let refused: Vec<(ItemKind, usize, &str)> =
        errors.iter().map(|e| (e.kind, e.index, e.address.as_str())).collect();
    assert_eq!(
        refused,
        [
            (ItemKind::User, 1, "alice@example.org"),
            (ItemKind::User, 2, "erin@new.org"),
            (ItemKind::User, 3, "frank@example.org"),
            (ItemKind::User, 5, "carol@example.org"),
            (ItemKind::Alias, 1, "f@example.org"),
            (ItemKind::Alias, 2, "e@new.org"),
        ]
    );
    assert!(matches!(errors[1].reason, DirectoryError::UnknownDomain { .. }));
    assert!(dir.user("dan@example.org").is_some_and(|u| !u.enabled));
    assert_eq!(dir.alias("c@example.org").unwrap().targets, ["carol@example.org"]);
    assert_eq!(a.changes.len(), 3);

    let mut with_domains = before;
    let cmd = match cmd {
        Command::ImportUsers { users, aliases, .. } => Command::ImportUsers { users, aliases, create_domains: true },
        other => other,
    };
    let a = ok(&mut with_domains, cmd);
    let Outcome::Import { applied, domains_created, .. } = &a.outcome else {
        panic!("{:?}", a.outcome);
    };
    assert_eq!((*applied, domains_created.as_slice()), (5, [s("new.org")].as_slice()));
    assert!(with_domains.domain("new.org").is_some());
    assert_eq!(with_domains.users(Some("new.org")).count(), 1);
}

/// Persists every change into a key/value map, as the cluster does, and checks that the map
/// rebuilds exactly the directory that produced it.
#[test]
fn changes_rebuild_the_same_directory() {
    let mut dir = Directory::new();
    let mut store: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut persist = |a: Applied| {
        for c in a.changes {
            match c.value {
                Some(v) => store.insert(c.key, v),
                None => store.remove(&c.key),
            };
        }
    };
    let mut big = User::new("big@b.org", ARGON);
    big.prefs.insert(s("signature"), s("Ünïcode\n-- sig"));
    let commands = [
        Command::AddDomain { name: s("a.org") },
        Command::AddDomain { name: s("gone.org") },
        Command::ImportUsers {
            users: vec![User::new("u1@a.org", HASH), big, User::new("u2@b.org", HASH)],
            aliases: vec![Alias { address: s("al@b.org"), targets: strings(&["u1@a.org", "x@ext.net"]) }],
            create_domains: true,
        },
        Command::AddList { address: s("l@a.org"), members: strings(&["al@b.org"]) },
        Command::SetCatchAll { domain: s("b.org"), target: Some(s("u2@b.org")) },
        Command::AddUser(User::new("tmp@a.org", HASH)),
        Command::RemoveUser { address: s("tmp@a.org") },
        Command::RemoveDomain { name: s("gone.org") },
        Command::ListAddMembers { address: s("l@a.org"), members: strings(&["u1@a.org"]) },
    ];
    for cmd in commands {
        persist(ok(&mut dir, cmd));
    }
    let rebuilt = Directory::from_records(store.clone().into_iter()).unwrap();
    assert_eq!(rebuilt, dir);
    let snapshot: BTreeMap<String, Vec<u8>> = dir.records().collect();
    assert_eq!(snapshot, store);
    let keys: BTreeSet<&str> = store.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "d/a.org", "d/b.org", "u/u1@a.org", "u/big@b.org", "u/u2@b.org", "a/al@b.org", "l/l@a.org"
        ])
    );
    assert_eq!(dir.kind_of("AL@b.org"), Some(Kind::Alias));
    assert_eq!(
        dir.lists(Some("A.ORG")).cloned().collect::<Vec<_>>(),
        vec![List { address: s("l@a.org"), members: strings(&["al@b.org", "u1@a.org"]) }]
    );
    let all: Vec<&str> = dir.users(None).map(|u| u.address.as_str()).collect();
    assert_eq!(all, ["u1@a.org", "big@b.org", "u2@b.org"]);
}

#[test]
fn commands_round_trip_through_json() {
    let cmd = Command::ImportUsers {
        users: vec![User::new("a@b.org", HASH)],
        aliases: vec![],
        create_domains: true,
    };
    let json = serde_json::to_string(&cmd).unwrap();
    assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), cmd);
    let a = fixture().apply(&Command::AddDomain { name: s("x.org") });
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(serde_json::from_str::<Result<Applied, DirectoryError>>(&json).unwrap(), a);
}
