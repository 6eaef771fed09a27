//! thin_metadata_size: numbers identical to upstream 1.3.3, the output styles
//! of `-n`, and the usage errors.

use crate::util::run;

/// (arguments, expected stdout) — values printed by upstream 1.3.3.
const CASES: &[(&str, &str)] = &[
    ("-s 2097152 -b 128 -m 1", "1064 sectors\n"),
    ("-b 64k -s 1t -m 1000 -u m -n=short", "524.04m\n"),
    (
        "-b 64k -s 1t -m 1000 -u g",
        "0.5117568969726563 gibibytes\n",
    ),
    ("-b 64k -s 1p -m 1 -u G", "17.05 gigabytes\n"),
    ("-b 65536b -s 1073741824b -m 10 -n", "1136\n"),
    ("-b 64k -s 1t -m 1000 -n=long", "1073232sectors\n"),
    (
        "-b 64k -s 1t -m 1000 --numeric-only=short -u KiB",
        "536616k\n",
    ),
    (
        "-b 64k -s 1t -m 1000 -u TiB -n=long",
        "0.0004997625946998596tebibytes\n",
    ),
    ("-b 64k -s 1t -m 1000 -u b", "549494784 bytes\n"),
    ("-b 64k -s 1t -m 1000 -u kB -n", "549494.78\n"),
    ("-b 64k -s 1t -m 1000 -u EB -n", "0.000000000549494784\n"),
    // Capped at 4,161,600 metadata blocks, the kernel's maximum.
    ("-b 64k -s 1e -m 5 -u byte", "17045913600 bytes\n"),
];

#[test]
fn estimates_match_upstream_numbers() {
    for (args, want) in CASES {
        let argv: Vec<&str> = args.split_whitespace().collect();
        let r = run("thin_metadata_size", &argv);
        r.expect_code(0);
        assert_eq!(r.stdout(), *want, "{}", r.describe());
        assert_eq!(r.stderr(), "", "{}", r.describe());
    }
}

/// stratisd: `-b <N>b -s <N>b -m <max> -n`, stdout parsed as an integer of sectors.
#[test]
fn stratisd_sizing_call_prints_a_bare_integer_of_sectors() {
    let r = run(
        "thin_metadata_size",
        &["-b", "4194304b", "-s", "1099511627776b", "-m", "100", "-n"],
    );
    r.expect_code(0);
    let sectors: u64 = r.stdout().trim().parse().expect("integer");
    // 262144 blocks -> 2081 leaves -> 1 + 2081 + 100 metadata blocks of 8 sectors.
    assert_eq!(sectors, (1 + 2081 + 100) * 8);
}

#[test]
fn invalid_sizes_are_usage_errors() {
    let cases: &[(&str, &str)] = &[
        ("-b 0 -s 1t -m 1", "block size must be a multiple of 64 KiB"),
        (
            "-b 96k -s 1t -m 1",
            "block size must be a multiple of 64 KiB",
        ),
        ("-b 2g -s 1t -m 1", "maximum block size is 1 GiB"),
        (
            "-b 1m -s 512k -m 1",
            "pool size must be larger than block size",
        ),
        ("-b 64k -s 16e -m 1", "value out of bounds"),
        ("-b 64k -s 1x -m 1", "Invalid unit specifier"),
        ("-b 64k -s 1kib -m 1", "Invalid unit specifier"),
        ("-b 64k -s 1t -m 1 -u furlong", "Invalid unit specifier"),
        ("-b 64k -s 1t -m x", "invalid digit found in string"),
        (
            "-b 64k -s 1t",
            "the following required arguments were not provided:",
        ),
        (
            "-b 64k -s 1t -m 1 -n short",
            "unexpected argument 'short' found",
        ),
    ];
    for (args, msg) in cases {
        let argv: Vec<&str> = args.split_whitespace().collect();
        let r = run("thin_metadata_size", &argv);
        r.expect_code(2);
        assert!(r.stderr().starts_with("error: "), "{}", r.describe());
        assert!(r.stderr().contains(msg), "want {msg:?}\n{}", r.describe());
        assert_eq!(r.stdout(), "", "{}", r.describe());
    }
}
