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
    dir.apply(&cmd)
        .unwrap_or_else(|e| panic!("{cmd:?} refused: {e}"))
}

/// example.org with alice, bob, sales → alice, team → [alice, bob]; other.org empty.
fn fixture() -> Directory {
    let mut dir = Directory::new();
    for cmd in [
        Command::AddDomain {
            name: s("Example.org"),
        },
        Command::AddDomain {
            name: s("other.org"),
        },
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

fn add_domain(name: &str) -> Command {
    Command::AddDomain { name: s(name) }
}

fn remove_domain(name: &str) -> Command {
    Command::RemoveDomain { name: s(name) }
}

fn catch_all(domain: &str, target: Option<&str>) -> Command {
    Command::SetCatchAll {
        domain: s(domain),
        target: target.map(s),
    }
}

fn add_user(address: &str, hash: &str) -> Command {
    Command::AddUser(User::new(address, hash))
}

fn remove_user(address: &str) -> Command {
    Command::RemoveUser {
        address: s(address),
    }
}

fn set_hash(address: &str, hash: &str) -> Command {
    Command::SetPasswordHash {
        address: s(address),
        hash: s(hash),
    }
}

fn rehash(address: &str, old_hash: &str, new_hash: &str) -> Command {
    Command::RehashPassword {
        address: s(address),
        old_hash: s(old_hash),
        new_hash: s(new_hash),
    }
}

fn add_alias(address: &str, targets: &[&str]) -> Command {
    Command::AddAlias {
        address: s(address),
        targets: strings(targets),
    }
}

fn remove_alias(address: &str) -> Command {
    Command::RemoveAlias {
        address: s(address),
    }
}

fn add_list(address: &str, members: &[&str]) -> Command {
    Command::AddList {
        address: s(address),
        members: strings(members),
    }
}

fn remove_list(address: &str) -> Command {
    Command::RemoveList {
        address: s(address),
    }
}

fn list_add(address: &str, members: &[&str]) -> Command {
    Command::ListAddMembers {
        address: s(address),
        members: strings(members),
    }
}

fn list_remove(address: &str, members: &[&str]) -> Command {
    Command::ListRemoveMembers {
        address: s(address),
        members: strings(members),
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
    // One line per case reads as a table; rustfmt would spread each over four.
    #[rustfmt::skip]
    let cases: Vec<(Command, &str)> = vec![
        (add_domain("EXAMPLE.org"), "already exists"),
        (add_domain("bad domain"), "invalid domain name"),
        (remove_domain("example.org"), "still holds 2 user(s), 1 alias(es) and 1 list(s)"),
        (remove_domain("nowhere.org"), "not served here"),
        (catch_all("nowhere.org", None), "not served here"),
        (catch_all("example.org", Some("ghost@example.org")), "ghost@example.org does not exist"),
        (catch_all("example.org", Some("nope")), "missing '@'"),
        (add_user("ALICE@example.org", HASH), "already taken by an existing user"),
        (add_user("sales@example.org", HASH), "already taken by an existing alias"),
        (add_user("team@example.org", HASH), "already taken by an existing list"),
        (add_user("carol@nowhere.org", HASH), "domain nowhere.org is not served here"),
        (add_user("carol", HASH), "invalid address"),
        (add_user("carol@example.org", "plain"), "password hash for carol@example.org refused"),
        (add_user("carol@example.org", "{MD5}abc"), "unsupported password scheme {MD5}"),
        (Command::AddUser(bad_user), "invalid display_name"),
        (Command::AddUser(bad_host), "invalid mail_host"),
        (Command::AddUser(bad_pref), "invalid prefs"),
        (remove_user("alice@example.org"), "used by alias sales@example.org, list team@example.org"),
        (remove_user("ghost@example.org"), "no user ghost@example.org"),
        (remove_user("sales@example.org"), "no user sales@example.org"),
        (remove_user("bad address"), "invalid address"),
        (set_hash("ghost@example.org", HASH), "no user"),
        (set_hash("bob@example.org", "$2y$05$x"), "unsupported password scheme"),
        (rehash("bob@example.org", HASH, "junk"), "refused"),
        (update("ghost@example.org"), "no user"),
        (both_prefs, "both set and removed"),
        (bad_name, "invalid display_name"),
        (add_alias("bob@example.org", &["x@ext.net"]), "existing user"),
        (add_alias("x@example.org", &[]), "at least one target"),
        (add_alias("x@nowhere.org", &["x@ext.net"]), "not served here"),
        (add_alias("x@example.org", &["ghost@example.org"]), "ghost@example.org does not exist"),
        (add_alias("x@example.org", &["ok@ext.net", "bad@"]), "invalid address \"bad@\""),
        (add_alias("x@example.org", &["X@example.org"]), "loop (x@example.org -> x@example.org)"),
        (add_alias("x@example.org", &["x+self@example.org"]), "mail loop"),
        (remove_alias("alice@example.org"), "no alias alice@example.org"),
        (add_list("sales@example.org", &[]), "existing alias"),
        (add_list("l@example.org", &["ghost@other.org"]), "ghost@other.org does not exist"),
        (add_list("l@example.org", &["l@example.org"]), "mail loop"),
        (list_add("sales@example.org", &[]), "no list sales@example.org"),
        (list_add("team@example.org", &["team@example.org"]), "mail loop"),
        (list_add("team@example.org", &["nope"]), "invalid address"),
        (list_remove("ghost@example.org", &[]), "no list"),
        (remove_list("sales@example.org"), "no list"),
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
    ok(
        &mut dir,
        add_list("outer@example.org", &["team@example.org"]),
    );
    ok(
        &mut dir,
        add_alias("all@example.org", &["outer+x@example.org"]),
    );
    let before = dir.clone();
    let err = dir
        .apply(&list_add(
            "team@example.org",
            &["ext@ext.net", "all@example.org"],
        ))
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
    assert_eq!(
        dir.user("ALICE@Example.org").unwrap().address,
        "alice@example.org"
    );

    let a = ok(
        &mut dir,
        catch_all("EXAMPLE.ORG", Some("Sales@example.org")),
    );
    assert_eq!(a.outcome, Outcome::Done);
    assert_eq!(a.changes.len(), 1);
    assert_eq!(a.changes[0].key, "d/example.org");
    assert_eq!(
        dir.domain("example.org").unwrap().catch_all.as_deref(),
        Some("sales@example.org")
    );
    let err = dir.apply(&remove_alias("sales@example.org")).unwrap_err();
    assert!(
        err.to_string().contains("catch-all of example.org"),
        "{err}"
    );
    ok(&mut dir, catch_all("example.org", None));

    ok(&mut dir, set_hash("bob@example.org", ARGON));
    assert_eq!(dir.user("bob@example.org").unwrap().password_hash, ARGON);

    // A rehash only lands while the stored hash is still the one the login verified.
    let stale = ok(&mut dir, rehash("bob@example.org", HASH, HASH));
    assert_eq!(
        (stale.outcome, stale.changes.len()),
        (Outcome::Unchanged, 0)
    );
    let gone = ok(&mut dir, rehash("ghost@example.org", HASH, ARGON));
    assert_eq!(gone.outcome, Outcome::Unchanged);
    let fresh = ok(&mut dir, rehash("alice@example.org", HASH, ARGON));
    assert_eq!(
        (fresh.outcome, fresh.changes[0].key.as_str()),
        (Outcome::Done, "u/alice@example.org")
    );
    assert_eq!(dir.user("alice@example.org").unwrap().password_hash, ARGON);

    let mut up = update("Alice@example.org");
    if let Command::UpdateUser {
        display_name,
        quota_bytes,
        mail_host,
        enabled,
        set_prefs,
        ..
    } = &mut up
    {
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
    assert_eq!(
        (alice.quota_bytes, alice.mail_host.as_str(), alice.enabled),
        (1 << 30, "store-2", false)
    );
    assert_eq!(alice.prefs.keys().collect::<Vec<_>>(), ["signature"]);
    assert_eq!(
        ok(&mut dir, update("alice@example.org")).outcome,
        Outcome::Unchanged
    );

    let add = ok(
        &mut dir,
        list_add(
            "team@example.org",
            &[
                "bob@example.org",
                "Ext@Ext.net",
                "ext@ext.net",
                "sales@example.org",
            ],
        ),
    );
    assert_eq!(add.outcome, Outcome::Done);
    assert_eq!(
        dir.list("team@example.org").unwrap().members,
        strings(&[
            "alice@example.org",
            "bob@example.org",
            "ext@ext.net",
            "sales@example.org"
        ])
    );
    let again = ok(&mut dir, list_add("team@example.org", &["bob@example.org"]));
    assert_eq!(again.outcome, Outcome::Unchanged);
    ok(
        &mut dir,
        list_remove(
            "team@example.org",
            &["ALICE@example.org", "bob@example.org", "not-a-member@x.org"],
        ),
    );
    assert_eq!(
        dir.list("team@example.org").unwrap().members,
        strings(&["ext@ext.net", "sales@example.org"])
    );

    // Tear everything down in dependency order; the domain goes last.
    for cmd in [
        remove_list("team@example.org"),
        remove_alias("sales@example.org"),
        remove_user("alice@example.org"),
        remove_user("bob@example.org"),
        remove_domain("example.org"),
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
    ok(
        &mut dir,
        add_alias("tagged@example.org", &["bob+news@example.org"]),
    );
    let err = dir.apply(&remove_user("bob@example.org")).unwrap_err();
    assert!(
        err.to_string().contains("alias tagged@example.org"),
        "{err}"
    );
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
            Alias {
                address: s("c@example.org"),
                targets: strings(&["carol@example.org"]),
            },
            Alias {
                address: s("f@example.org"),
                targets: strings(&["frank@example.org"]),
            },
            Alias {
                address: s("e@new.org"),
                targets: strings(&["erin@new.org"]),
            },
        ],
        create_domains: false,
    };
    let before = dir.clone();
    let a = ok(&mut dir, cmd.clone());
    let Outcome::Import {
        applied,
        domains_created,
        errors,
    } = &a.outcome
    else {
        panic!("{:?}", a.outcome);
    };
    assert_eq!(*applied, 3);
    assert!(domains_created.is_empty());
    let refused: Vec<(ItemKind, usize, &str)> = errors
        .iter()
        .map(|e| (e.kind, e.index, e.address.as_str()))
        .collect();
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
    assert!(matches!(
        errors[1].reason,
        DirectoryError::UnknownDomain { .. }
    ));
    assert!(dir.user("dan@example.org").is_some_and(|u| !u.enabled));
    assert_eq!(
        dir.alias("c@example.org").unwrap().targets,
        ["carol@example.org"]
    );
    assert_eq!(a.changes.len(), 3);

    let mut with_domains = before;
    let cmd = match cmd {
        Command::ImportUsers { users, aliases, .. } => Command::ImportUsers {
            users,
            aliases,
            create_domains: true,
        },
        other => other,
    };
    let a = ok(&mut with_domains, cmd);
    let Outcome::Import {
        applied,
        domains_created,
        ..
    } = &a.outcome
    else {
        panic!("{:?}", a.outcome);
    };
    assert_eq!(
        (*applied, domains_created.as_slice()),
        (5, [s("new.org")].as_slice())
    );
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
        add_domain("a.org"),
        add_domain("gone.org"),
        Command::ImportUsers {
            users: vec![
                User::new("u1@a.org", HASH),
                big,
                User::new("u2@b.org", HASH),
            ],
            aliases: vec![Alias {
                address: s("al@b.org"),
                targets: strings(&["u1@a.org", "x@ext.net"]),
            }],
            create_domains: true,
        },
        add_list("l@a.org", &["al@b.org"]),
        catch_all("b.org", Some("u2@b.org")),
        Command::AddUser(User::new("tmp@a.org", HASH)),
        remove_user("tmp@a.org"),
        remove_domain("gone.org"),
        list_add("l@a.org", &["u1@a.org"]),
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
            "d/a.org",
            "d/b.org",
            "u/u1@a.org",
            "u/big@b.org",
            "u/u2@b.org",
            "a/al@b.org",
            "l/l@a.org"
        ])
    );
    assert_eq!(dir.kind_of("AL@b.org"), Some(Kind::Alias));
    assert_eq!(
        dir.lists(Some("A.ORG")).cloned().collect::<Vec<_>>(),
        vec![List {
            address: s("l@a.org"),
            members: strings(&["al@b.org", "u1@a.org"])
        }]
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
    let a = fixture().apply(&add_domain("x.org"));
    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(
        serde_json::from_str::<Result<Applied, DirectoryError>>(&json).unwrap(),
        a
    );
}
