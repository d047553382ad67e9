//! `ironlet audit verify FILE...`: checks that a kubelet API audit log is whole. The files
//! are given oldest first (`audit.log.5 … audit.log.1 audit.log`); the first gap, edited
//! record or reordering is reported with its file and line, and the exit code is 1.

use std::path::PathBuf;

use crate::server::audit;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the hash chain of audit log files, oldest first; exit 1 at the first break.
    Verify {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        AuditCommand::Verify { files } => {
            let v = audit::verify(&files).map_err(|b| anyhow::anyhow!("audit log broken: {b}"))?;
            match (v.first_seq, v.last_seq, v.last_hash) {
                (Some(first), Some(last), Some(hash)) => println!(
                    "ok: {} records, seq {first} to {last}, unbroken; last record's hash {hash}",
                    v.records
                ),
                _ => println!("ok: no records"),
            }
            Ok(())
        }
    }
}
