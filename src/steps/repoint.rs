//! `repoint`: move clients to the target through the plan's indirection (a hook, a file), and
//! optionally prove that producers now write to the target's *original* topics (`orders`,
//! never the replica `primary.orders`, which belongs to MirrorMaker 2).

use std::collections::BTreeMap;

use super::exec::run_hook;
use super::{StepCtx, StepDone, StepError, StepResult, sleep_or_cancel};
use crate::mm2::ReplicationPolicy;
use crate::plan::Repoint;

pub async fn run(ctx: &mut StepCtx<'_>, r: &Repoint) -> StepResult {
    let (_, target) = ctx.plan.source_target(ctx.direction);
    let target = target.clone();
    if ctx.dry_run {
        let mut parts = Vec::new();
        if let Some(c) = &r.run {
            parts.push(format!("would run `{}`", c.shown));
        }
        if let Some(w) = &r.write_file {
            parts.push(format!(
                "would write {}'s servers to {}",
                target.role,
                w.path.display()
            ));
        }
        if let Some(within) = r.verify_writes_within {
            parts.push(format!(
                "would check writes reach {}'s original topics within {}",
                target.role,
                humantime::format_duration(within)
            ));
        }
        return Ok(StepDone::DryRun(parts.join("; ")));
    }
    // Baseline before clients move, so writes after the move are counted.
    let before = match r.verify_writes_within {
        Some(_) => Some(original_topic_ends(ctx).await?),
        None => None,
    };
    if let Some(command) = &r.run {
        let timeout = ctx.remaining();
        run_hook(ctx, command, timeout, std::time::Duration::from_secs(5))
            .await?
            .into_result(timeout)?;
    }
    if let Some(w) = &r.write_file {
        let content = match &w.content {
            Some(c) => c.replace("{bootstrap_servers}", &target.bootstrap_servers),
            None => format!("{}\n", target.bootstrap_servers),
        };
        write_atomically(&w.path, &content)
            .map_err(|e| StepError::Failed(format!("failed to write {}: {e}", w.path.display())))?;
        ctx.recorder.decide(
            ctx.operator,
            format!(
                "repoint clients to {} via {}",
                target.role,
                w.path.display()
            ),
            format!("{} is the new bootstrap", target.bootstrap_servers),
            serde_json::Value::Null,
        )?;
    }
    let Some(within) = r.verify_writes_within else {
        return Ok(StepDone::Ok(format!(
            "clients repointed to {}",
            target.role
        )));
    };
    let before = before.unwrap_or_default();
    let flow = ctx.flow()?;
    let verify_deadline = tokio::time::Instant::now() + within;
    loop {
        let now = original_topic_ends(ctx).await?;
        let grown: BTreeMap<String, i64> =
            now.iter()
                .fold(BTreeMap::new(), |mut acc, ((topic, p), end)| {
                    let delta = end - before.get(&(topic.clone(), *p)).copied().unwrap_or(0);
                    if delta > 0 {
                        *acc.entry(topic.clone()).or_default() += delta;
                    }
                    acc
                });
        if !grown.is_empty() {
            ctx.recorder.observe(
                "writes_on_target",
                format!("producers write to {}'s original topics", target.role),
                serde_json::json!({ "new_records_per_topic": grown }),
            )?;
            let total: i64 = grown.values().sum();
            return Ok(StepDone::Ok(format!(
                "clients repointed to {}; {total} new records on {}",
                target.role,
                grown.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        if tokio::time::Instant::now() >= verify_deadline
            || tokio::time::Instant::now() >= ctx.deadline
        {
            let remote_hint = match flow.policy {
                ReplicationPolicy::Default { .. } => format!(
                    " (writes to {} would be a mistake: that topic belongs to MirrorMaker 2)",
                    flow.remote_topic("<topic>")
                ),
                ReplicationPolicy::Identity { .. } => String::new(),
            };
            return Err(StepError::Failed(format!(
                "no new records on {}'s original topics within {}: are producers still pointed at the old cluster?{remote_hint}",
                target.role,
                humantime::format_duration(within)
            )));
        }
        if sleep_or_cancel(std::time::Duration::from_millis(200), &mut ctx.cancel).await {
            return Err(StepError::Interrupted(
                "interrupted while verifying writes".to_owned(),
            ));
        }
    }
}

/// End offsets of the target's own copies of the plan's topics (not MM2's replicas).
async fn original_topic_ends(
    ctx: &mut StepCtx<'_>,
) -> Result<BTreeMap<(String, i32), i64>, StepError> {
    let flow = ctx.flow()?;
    let policy = &flow.policy;
    let tps = ctx
        .target_partitions(&flow, |t| {
            crate::plan::matches_any(&flow.topics, t)
                && !policy.is_internal_topic(t)
                && !matches!(policy, ReplicationPolicy::Default { .. } if policy.topic_source(t).as_deref() == Some(flow.source_alias()))
        })
        .await?;
    let ends = ctx
        .bounded(
            "read the target's end offsets",
            flow.target.end_offsets(&tps),
        )
        .await?;
    Ok(ends
        .into_iter()
        .map(|(tp, e)| ((tp.topic, tp.partition), e))
        .collect())
}

fn write_atomically(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.kdr-tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("repoint")
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// One line saying what the step will do, in the plan's words (secrets as their references).
pub fn summary(plan: &crate::plan::Plan, direction: crate::plan::Direction, r: &Repoint) -> String {
    let (_, target) = plan.source_target(direction);
    let mut parts = Vec::new();
    if let Some(c) = &r.run {
        parts.push(format!("run `{}`", c.shown));
    }
    if let Some(w) = &r.write_file {
        parts.push(format!(
            "write {}'s servers to {}",
            target.role,
            w.path.display()
        ));
    }
    if let Some(within) = r.verify_writes_within {
        parts.push(format!(
            "prove producers write to {}'s original topics within {}",
            target.role,
            humantime::format_duration(within)
        ));
    }
    parts.join(", ")
}
