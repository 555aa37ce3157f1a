//! The README's layout map is the tree: every module file under src/ is
//! named in the map's line for its folder, and every folder the map names
//! exists.

use std::path::Path;

fn layout_block() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("## Layout")
        .expect("README has a Layout section");
    let block = &readme[start..];
    let open = block.find("```\n").unwrap() + 4;
    let close = open + block[open..].find("```").unwrap();
    block[open..close].to_string()
}

/// The map's text for `folder` (its line and the indented lines after it).
fn entry(map: &str, folder: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in map.lines() {
        if line.starts_with(folder) {
            inside = true;
        } else if !line.starts_with(' ') {
            inside = false;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn readme_layout_names_every_module() {
    let map = layout_block();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for dir in std::fs::read_dir(&src).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let folder = format!("src/{}/", dir.file_name().unwrap().to_string_lossy());
        let text = entry(&map, &folder);
        assert!(!text.is_empty(), "the layout map has no line for {folder}");
        for file in std::fs::read_dir(&dir).unwrap() {
            let name = file.unwrap().file_name().to_string_lossy().to_string();
            let Some(module) = name.strip_suffix(".rs") else {
                continue;
            };
            if module != "mod" && !text.contains(module) {
                missing.push(format!("{folder}{name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in README's layout map: {missing:?}"
    );
    for line in map.lines().filter(|l| !l.starts_with(' ')) {
        let path = line.split_whitespace().next().unwrap();
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        assert!(
            full.exists(),
            "the layout map names {path}, which is not in the tree"
        );
    }
}
