//! What the next command or `gc` does with a cgroup journal entry (the JSON of a [`Cgroup`]
//! written before the cgroup was made) that a killed boxr left.

use super::Cgroup;

/// Cleans up after one cgroup journal entry (the JSON of a [`Cgroup`]) a killed boxr left:
/// removes the cgroup unless a process is still in it (a running container's). `Ok(true)`: the
/// cgroup is gone and the entry may go; `Ok(false)`: in use, the entry stays. A torn entry (its
/// writer died before creating anything) counts as gone.
pub fn clean_journal_entry(entry: &[u8]) -> Result<bool, super::CgroupError> {
    let Ok(cg) = serde_json::from_slice::<Cgroup>(entry) else {
        return Ok(true);
    };
    if !cg.pids().is_empty() {
        return Ok(false);
    }
    cg.remove()?;
    Ok(true)
}

/// Removes the cgroup of a journal entry whose owner is gone (a killed build's step), killing
/// what is left in it first: those processes were the dead owner's, dying with it
/// (`die_with_parent`) but perhaps not yet gone. `Ok(true)`: the entry may go.
pub fn destroy_journal_entry(entry: &[u8]) -> Result<bool, super::CgroupError> {
    let Ok(cg) = serde_json::from_slice::<Cgroup>(entry) else {
        return Ok(true);
    };
    cg.destroy()?;
    Ok(true)
}
