//! The example organisation as the controller's tests load it, shared by the server's and the
//! CLI's tests (`#[path]`-included, so each test binary compiles its own copy of one source).

/// The example organisation's own files (`examples/` also holds other demos), copied into
/// `into`: the topology, the policy, the defaults, the teams and the services.
pub fn example_organisation(into: &std::path::Path) -> std::path::PathBuf {
    fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_tree(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let organisation = into.join("organisation");
    std::fs::create_dir_all(&organisation).unwrap();
    for part in ["topology.yaml", "policy.yaml", "org", "teams", "services"] {
        let from = examples.join(part);
        if from.is_dir() {
            copy_tree(&from, &organisation.join(part));
        } else {
            std::fs::copy(&from, organisation.join(part)).unwrap();
        }
    }
    organisation
}
