//! The directory backend passes the conformance suite and leaves no
//! temporary file behind.

use std::sync::Arc;

#[tokio::test]
async fn the_directory_backend_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("file://{}", dir.path().join("archive").display());
    let archive = archive::open(&url).await.expect("open");
    archive::conformance::run(archive.clone()).await;
    let direct = archive::FileArchive::open(dir.path().join("archive")).expect("open");
    archive::conformance::run(Arc::new(direct)).await;
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

/// Temporary files of unfinished puts below `dir`.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(leftovers(&path));
        } else if entry.file_name().to_string_lossy().starts_with("~tmp-") {
            found.push(path.display().to_string());
        }
    }
    found
}
