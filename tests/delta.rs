//! Tests for thin_delta: byte identity with thin-provisioning-tools 1.3.3 on
//! the shared corpus, outputs derived from what the kernel did in each
//! fixture's scenario, and bad input.

use crate::util::corpus::assert_corpus_identical;
use crate::util::fixtures::{fixture_image, fixture_info};
use crate::util::run;
use crate::util::scenario::snap_chain_model;

fn delta_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("    <"))
        .map(str::to_string)
        .collect()
}

#[test]
fn corpus_outputs_are_byte_identical_to_upstream() {
    assert_corpus_identical("thin_delta", true);
}

#[test]
fn snap_chain_deltas_name_the_blocks_each_snapshot_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("d-snap-chain", tmp.path()) else {
        return;
    };
    let img = img.to_str().unwrap();
    let model = snap_chain_model();
    let info = fixture_info("d-snap-chain");
    let pairs = [
        (0, 1),
        (1, 2),
        (0, 12),
        (4, 12),
        (5, 6),
        (11, 12),
        (3, 0),
        (10, 11),
    ];
    for (a, b) in pairs {
        let (sa, sb) = (a.to_string(), b.to_string());
        let r = run("thin_delta", &["--thin1", &sa, "--thin2", &sb, img]);
        r.expect_code(0);
        let out = r.stdout();
        let first = out.lines().next().unwrap();
        assert_eq!(
            first,
            format!(
                "<superblock uuid=\"\" time=\"12\" transaction=\"{}\" data_block_size=\"{}\" nr_data_blocks=\"{}\">",
                info["transaction_id"], info["data_block_size"], info["data_blocks"]
            )
        );
        assert!(out.contains(&format!("  <diff left=\"{a}\" right=\"{b}\">\n")));
        assert!(out.ends_with("  </diff>\n</superblock>"), "{out}");
        assert_eq!(
            delta_lines(&out),
            model.expected_delta(a, b),
            "delta {a} {b}\n{out}"
        );
    }
}

#[test]
fn verbose_output_lists_the_same_ranges_grouped_by_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("d-snap-chain", tmp.path()) else {
        return;
    };
    let img = img.to_str().unwrap();
    for (a, b) in [("0", "12"), ("5", "6"), ("11", "12")] {
        let simple = run("thin_delta", &["--snap1", a, "--snap2", b, img]);
        let verbose = run(
            "thin_delta",
            &["--verbose", "--snap1", a, "--snap2", b, img],
        );
        verbose.expect_code(0);
        let mut group = String::new();
        let mut flattened = Vec::new();
        for line in verbose.stdout().lines() {
            let t = line.trim_start();
            if let Some(tag) = line.strip_prefix("    </") {
                assert_eq!(
                    tag.trim_end_matches('>'),
                    group,
                    "group closed out of order"
                );
            } else if t.starts_with("<range ") {
                assert!(line.starts_with("      <range "), "{line}");
                let attr = |name: &str| {
                    let p = t.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                    t[p..p + t[p..].find('"').unwrap()].to_string()
                };
                flattened.push(format!(
                    "    <{group} begin=\"{}\" length=\"{}\"/>",
                    attr("begin"),
                    attr("length")
                ));
            } else if line.starts_with("    <") {
                group = t.trim_start_matches('<').trim_end_matches('>').to_string();
            }
        }
        assert_eq!(
            flattened,
            delta_lines(&simple.stdout()),
            "{}",
            verbose.describe()
        );
    }
}

#[test]
fn held_metadata_snapshot_shows_the_pool_before_the_reservation() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("f-held-metasnap", tmp.path()) else {
        return;
    };
    let img = img.to_str().unwrap();
    let held = fixture_info("f-held-metasnap")["held_root"].clone();
    // 256 KiB blocks: dev 0 wrote 48 blocks, snapshot 1 was taken, then the
    // snapshot was reserved; afterwards dev 0 rewrote blocks 0..8 and dev 1
    // blocks 32..36.
    let live = run("thin_delta", &["--thin1", "0", "--thin2", "1", img]);
    live.expect_code(0);
    assert_eq!(
        delta_lines(&live.stdout()),
        [
            "    <different begin=\"0\" length=\"8\"/>",
            "    <same begin=\"8\" length=\"24\"/>",
            "    <different begin=\"32\" length=\"4\"/>",
            "    <same begin=\"36\" length=\"12\"/>",
        ]
    );
    let want_snap = "<superblock uuid=\"\" time=\"1\" transaction=\"1\" data_block_size=\"512\" nr_data_blocks=\"0\">\n  <diff left=\"0\" right=\"1\">\n    <same begin=\"0\" length=\"48\"/>\n  </diff>\n</superblock>";
    for m in [
        "-m".to_string(),
        "--metadata-snap".to_string(),
        format!("-m={held}"),
        format!("-m{held}"),
    ] {
        let r = run("thin_delta", &[&m, "--thin1=0", "--thin2=1", img]);
        r.expect_code(0);
        assert_eq!(r.stdout(), want_snap, "{}", r.describe());
        assert_eq!(r.stderr(), "");
    }
    // Device 2 was created after the reservation.
    let r = run("thin_delta", &["-m", "--thin1", "0", "--thin2", "2", img]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "Unable to find mapping tree for snap2 (2)\n");
}

#[test]
fn roots_given_directly_give_the_same_deltas_as_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("d-snap-chain", tmp.path()) else {
        return;
    };
    let dev = thintools::pdata::io::open_metadata(
        &img,
        thintools::pdata::io::Access::ReadOnly,
        thintools::pdata::io::Sharing::Exclusive,
    )
    .unwrap();
    let sb = thintools::thin::model::superblock::read_live_superblock(&dev).unwrap();
    let roots = thintools::thin::model::open::device_roots(&dev, sb.mapping_root).unwrap();
    let img = img.to_str().unwrap();
    let (r3, r7) = (roots[&3].to_string(), roots[&7].to_string());
    let by_id = run("thin_delta", &["--thin1", "3", "--thin2", "7", img]);
    let by_root = run("thin_delta", &["--root1", &r3, "--root2", &r7, img]);
    let mixed = run("thin_delta", &["--snap1", "3", "--root2", &r7, img]);
    by_root.expect_code(0);
    let diff_line = |s: &str| s.lines().nth(1).unwrap().to_string();
    assert_eq!(
        diff_line(&by_root.stdout()),
        format!("  <diff left_root=\"{r3}\" right_root=\"{r7}\">")
    );
    assert_eq!(
        diff_line(&mixed.stdout()),
        format!("  <diff left=\"3\" right_root=\"{r7}\">")
    );
    assert_eq!(delta_lines(&by_root.stdout()), delta_lines(&by_id.stdout()));
    assert_eq!(delta_lines(&mixed.stdout()), delta_lines(&by_id.stdout()));
    // A root that is not a btree node is reported, not trusted.
    let r = run("thin_delta", &["--root1", "0", "--root2", &r7, img]);
    r.expect_code(1);
    assert!(r.stderr().contains("at block 0"), "{}", r.describe());
    assert!(r.stdout().is_empty());
}

#[test]
fn a_missing_side_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("none.img").to_string_lossy().into_owned();
    for (args, msg) in [
        (vec![img.as_str()], "--thin1 or --root1 not specified"),
        (
            vec!["--thin1", "0", &img],
            "--thin2 or --root2 not specified",
        ),
        (
            vec!["--root1", "5", &img],
            "--thin2 or --root2 not specified",
        ),
        (
            vec!["--thin2", "0", &img],
            "--thin1 or --root1 not specified",
        ),
    ] {
        let r = run("thin_delta", &args);
        r.expect_code(2);
        assert_eq!(
            r.stderr(),
            format!("error: {msg}\n\nFor more information, try '--help'.\n")
        );
    }
    let r = run(
        "thin_delta",
        &["--thin1", "0", "--root1", "4", "--thin2", "1", &img],
    );
    r.expect_code(2);
    assert!(
        r.stderr().contains("cannot be used with"),
        "{}",
        r.describe()
    );
    let r = run(
        "thin_delta",
        &["--thin1", "0", "--thin1", "1", "--thin2", "1", &img],
    );
    r.expect_code(2);
    assert!(
        r.stderr().contains("cannot be used multiple times"),
        "{}",
        r.describe()
    );
}

#[test]
fn unknown_ids_and_missing_snapshots_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(img) = fixture_image("d-snap-chain", tmp.path()) else {
        return;
    };
    let img = img.to_str().unwrap();
    let r = run("thin_delta", &["--thin1", "40", "--thin2", "41", img]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "Unable to find mapping tree for snap1 (40)\n");
    let r = run("thin_delta", &["--thin1", "0", "--thin2", "41", img]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "Unable to find mapping tree for snap2 (41)\n");
    let r = run("thin_delta", &["-m", "--thin1", "0", "--thin2", "1", img]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "no current metadata snap\n");
    let r = run("thin_delta", &["-m=1", "--thin1", "0", "--thin2", "1", img]);
    r.expect_code(1);
    assert_eq!(r.stderr(), "metadata snap: bad checksum in superblock\n");
    assert!(r.stdout().is_empty());
}

#[test]
fn bad_inputs_are_refused_with_the_shared_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let zero = tmp.path().join("zero.img");
    std::fs::write(&zero, vec![0u8; 8192]).unwrap();
    let xml = tmp.path().join("x.xml");
    std::fs::write(&xml, b"<superblock uuid=\"\">\n".repeat(300)).unwrap();
    let small = tmp.path().join("small.img");
    std::fs::write(&small, b"abc").unwrap();
    let z = zero.to_str().unwrap();
    let cases = [
        (z.to_string(), "bad checksum in superblock\n(block 0 is all zeroes: this metadata was never formatted)\n".to_string()),
        (xml.to_string_lossy().into_owned(), "This looks like XML.  This tool only supports the binary metadata format.\n".to_string()),
        (small.to_string_lossy().into_owned(), "Metadata device/file too small.  Is this binary metadata?\n".to_string()),
        ("/nonexistent/m.img".to_string(), "Couldn't find input file '/nonexistent/m.img'\n".to_string()),
    ];
    for (path, msg) in cases {
        let r = run("thin_delta", &["--thin1", "0", "--thin2", "1", &path]);
        r.expect_code(1);
        assert_eq!(r.stderr(), msg);
        assert!(r.stdout().is_empty());
    }
}

/// Guest side of `live_pool_delta_and_ls_through_the_metadata_snapshot`
/// (64 KiB blocks, 16 chunks of 4 KiB per block). Snapshot 2 of dev 1 is
/// taken; dev 1 then rewrites blocks 10..15 and 100..103 and writes the new
/// blocks 200..208; snapshot 3 of dev 1 is taken; dev 1 rewrites 10..12. A
/// background writer keeps writing to dev 4 while the metadata snapshot is
/// reserved and our tools run; after the reservation dev 1 rewrites 60..64
/// and thin 5 is created, which the snapshot must not show.
const LIVE_DELTA_SCRIPT: &str = r#"
. /job/lib.sh
pool_start 128 0
thin_new 1 16
thin_up 1
put_blocks 1 1 0 128
snap_new 2 1
put_blocks 1 2 10 5
put_blocks 1 2 100 3
put_blocks 1 2 200 8
snap_new 3 1
put_blocks 1 3 10 2
thin_new 4 64
thin_up 4
pool_msg set_transaction_id 0 5

touch /tmp/writing
(
    i=0
    while [ -e /tmp/writing ] && [ $i -lt 256 ]; do
        chunks 4 9 $((i * 64)) 64 | dd of=/dev/mapper/thin4 bs=256K seek=$i count=1 \
            iflag=fullblock oflag=direct conv=notrunc 2>/dev/null
        i=$((i + 1))
    done
    echo $i > /tmp/writer.count
) &
writer=$!
sleep 1

pool_msg reserve_metadata_snap
dmsetup status pool > "$OUT/status-reserved.txt"
put_blocks 1 4 60 4
thin_new 5 8
pool_msg set_transaction_id 5 6

run() { # run NAME CMD...: stdout, stderr and exit code of one tool run
    name=$1; shift
    rc=0
    "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" || rc=$?
    echo $rc > "$OUT/$name.rc"
}
run delta-2-3 thin_delta -m --thin1 2 --thin2 3 "$META"
run delta-1-3 thin_delta --metadata-snap --thin1=1 --thin2=3 "$META"
run delta-2-3-verbose thin_delta -m --verbose --snap1 2 --snap2 3 "$META"
run ls-m thin_ls --no-headers -m -o DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS "$META"
run ls-cadvisor thin_ls --no-headers -m -o DEV,EXCLUSIVE_BYTES "$META"
run ls-live thin_ls "$META"
if kill -0 $writer 2>/dev/null; then echo yes; else echo no; fi > "$OUT/writer-running.txt"

pool_msg release_metadata_snap
dmsetup status pool > "$OUT/status-released.txt"
run delta-released thin_delta -m --thin1 2 --thin2 3 "$META"
rm /tmp/writing
wait $writer
for d in $(dmsetup ls | awk '$1 ~ /^thin/ { print $1 }'); do show dmsetup remove "$d"; done
pool_stop
"#;

/// Issue 4 item 6: a live pool under writes, `reserve_metadata_snap`, our
/// thin_delta -m and thin_ls -m inside the guest, `release_metadata_snap`.
#[test]
fn live_pool_delta_and_ls_through_the_metadata_snapshot() {
    if !crate::util::vm::vm_enabled() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let meta = work.path().join("meta.img");
    let data = work.path().join("data.img");
    std::fs::File::create(&meta)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    std::fs::File::create(&data)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let g = crate::util::vm::Guest::new(LIVE_DELTA_SCRIPT)
        .disk("meta", &meta)
        .disk("data", &data)
        .bin(&crate::util::bin("thin_delta"))
        .bin(&crate::util::bin("thin_ls"))
        .timeout(300)
        .run(work.path());
    g.expect_ok();
    let ctx = g.describe();
    let rc = |name: &str| g.read(&format!("{name}.rc")).trim().to_string();
    let held = g.read("status-reserved.txt");
    let held: Vec<&str> = held.split_whitespace().collect();
    assert!(held[6].parse::<u64>().is_ok(), "held root: {held:?}");
    assert_eq!(
        g.read("writer-running.txt").trim(),
        "yes",
        "pool was not under writes"
    );

    // Exactly the blocks written between snapshot 2 and snapshot 3.
    assert_eq!(rc("delta-2-3"), "0", "{}\n{ctx}", g.read("delta-2-3.err"));
    assert_eq!(
        g.read("delta-2-3.out"),
        "<superblock uuid=\"\" time=\"2\" transaction=\"5\" data_block_size=\"128\" nr_data_blocks=\"0\">\n  <diff left=\"2\" right=\"3\">\n    <same begin=\"0\" length=\"10\"/>\n    <different begin=\"10\" length=\"5\"/>\n    <same begin=\"15\" length=\"85\"/>\n    <different begin=\"100\" length=\"3\"/>\n    <same begin=\"103\" length=\"25\"/>\n    <right_only begin=\"200\" length=\"8\"/>\n  </diff>\n</superblock>"
    );
    assert_eq!(g.read("delta-2-3.err"), "");
    // Dev 1 at the reservation: snapshot 3 plus the rewrite of 10..12, not
    // the rewrite of 60..64 made after it.
    assert_eq!(rc("delta-1-3"), "0");
    assert_eq!(
        delta_lines(&g.read("delta-1-3.out")),
        [
            "    <same begin=\"0\" length=\"10\"/>",
            "    <different begin=\"10\" length=\"2\"/>",
            "    <same begin=\"12\" length=\"116\"/>",
            "    <same begin=\"200\" length=\"8\"/>",
        ]
    );
    let verbose = g.read("delta-2-3-verbose.out");
    assert!(
        verbose.contains("    <right_only>\n      <range begin=\"200\" data_begin=\""),
        "{verbose}"
    );

    // thin_ls -m: dev 2 alone holds the old copies of the 8 rewritten
    // blocks; dev 3 the old copies of 10..12; dev 4 shares nothing.
    assert_eq!(rc("ls-m"), "0", "{}", g.read("ls-m.err"));
    assert_eq!(g.read("ls-m.err"), "Scanning data mappings\n");
    let rows: Vec<Vec<u64>> = g
        .read("ls-m.out")
        .lines()
        .map(|l| l.split_whitespace().map(|w| w.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 4, "devices 1-4 (5 came later)\n{rows:?}");
    assert_eq!(rows[0], [1, 136, 2, 134]);
    assert_eq!(rows[1], [2, 128, 8, 120]);
    assert_eq!(rows[2], [3, 136, 2, 134]);
    let (n4, e4) = (rows[3][1], rows[3][2]);
    assert!(
        rows[3][0] == 4 && n4 > 0 && e4 == n4 && rows[3][3] == 0,
        "{rows:?}"
    );
    // cAdvisor's parse: exactly two numbers per line, the second in bytes.
    let cadvisor = g.read("ls-cadvisor.out");
    let pairs: Vec<(u64, u64)> = cadvisor
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 2, "{cadvisor}");
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    assert_eq!(
        pairs[..3],
        [(1, 2 << 16), (2, 8 << 16), (3, 2 << 16)],
        "{cadvisor}"
    );
    assert_eq!(pairs[3], (4, n4 << 16));
    // Without -m the live metadata device is held by the pool (O_EXCL).
    assert_eq!(rc("ls-live"), "1");
    assert!(
        g.read("ls-live.err").contains("Device or resource busy"),
        "{}",
        g.read("ls-live.err")
    );
    // Released: no snapshot to read any more.
    assert_eq!(
        g.read("status-released.txt").split_whitespace().nth(6),
        Some("-")
    );
    assert_eq!(rc("delta-released"), "1");
    assert_eq!(g.read("delta-released.err"), "no current metadata snap\n");
}
