//! Manual pages against the tools' clap definitions: every long option a
//! tool accepts (as `commands::TOOLS` declares it) must be in `man/<tool>.8`.

use std::path::Path;

/// Every visible long option of `tool` as clap defines it, `--name`
/// (aliases shown in `--help` included; `--help` and `--version` too), sorted.
/// `None` for a name that is not in the tool table.
pub fn long_flags(tool: &str) -> Option<Vec<String>> {
    let mut cmd = (thintools::commands::find(tool)?.cli)();
    cmd.build();
    let mut flags: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .flat_map(|a| {
            a.get_long()
                .into_iter()
                .chain(a.get_visible_aliases().unwrap_or_default())
        })
        .map(|name| format!("--{name}"))
        .collect();
    flags.sort();
    flags.dedup();
    Some(flags)
}

/// `man/<tool>.8` with roff's `\-` turned back into `-`.
pub fn page(tool: &str) -> Result<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("man/{tool}.8"));
    std::fs::read_to_string(&path)
        .map(|p| p.replace("\\-", "-"))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The long options of `tool` (from clap) that its man page does not mention.
pub fn missing_from_page(tool: &str) -> Result<Vec<String>, String> {
    let flags = long_flags(tool).ok_or(format!("{tool} is not in commands::TOOLS"))?;
    let page = page(tool)?;
    Ok(flags
        .into_iter()
        .filter(|f| !page.contains(f.as_str()))
        .collect())
}
