//! The `wharf` command: `up` (all in one), `server` (control plane) and client verbs.

mod agent;
mod client;
mod kubeconfig;
mod node;
mod secrets;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Wharf: a WebAssembly-native orchestrator with the Kubernetes API.
#[derive(Parser, Debug)]
#[command(name = "wharf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything in one process: API server, controllers, a node, the gateway.
    Up(up::ServeArgs),
    /// Run the control plane only (API server and controllers).
    Server(up::ServeArgs),
    /// Run a node that joins a `wharf server`: `wharf agent --server URL --name NODE`.
    Agent(agent::AgentArgs),
    /// Create or update objects from YAML/JSON files, a directory, or `-` for stdin.
    Apply {
        /// File, directory or `-`.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        target: client::Target,
    },
    /// Show objects: `wharf get KIND [NAME]`.
    Get {
        /// Kind, plural or short name (e.g. `pods`, `deploy`, `cm`).
        kind: String,
        /// Object name; all objects if absent.
        name: Option<String>,
        /// Output format: `table` (default), `json`, `yaml` or `name`.
        #[arg(short = 'o', long = "output", default_value = "table")]
        output: String,
        /// Across all namespaces.
        #[arg(short = 'A', long = "all-namespaces")]
        all_namespaces: bool,
        /// Only objects with these labels (`app=web,tier!=db`).
        #[arg(short = 'l', long = "selector")]
        selector: Option<String>,
        #[command(flatten)]
        target: client::Target,
    },
    /// Upload a Wasm artifact to the control plane: `wharf push app.wasm --name app:1`.
    Push {
        /// The .wasm file.
        file: PathBuf,
        /// NAME[:TAG] to publish it as (default: the file name, tag latest).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        target: client::Target,
    },
    /// Container images: `wharf image import app.tar` uploads an OCI image archive.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Print a pod's logs: `wharf logs POD [-c CONTAINER] [-f]`.
    Logs {
        /// The pod.
        pod: String,
        /// The container (default: the only one).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Keep streaming new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        target: client::Target,
    },
    /// Push a Wasm HTTP function and run it: a Deployment plus a NodePort Service; prints the URL.
    Deploy {
        /// The .wasm component (wasi:http).
        file: PathBuf,
        /// The name of the function (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// How many replicas.
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        #[command(flatten)]
        target: client::Target,
    },
    /// Encryption at rest of Secrets and ConfigMaps: `wharf secrets rotate-key --data-dir DIR`
    /// (while wharf is stopped).
    Secrets {
        #[command(subcommand)]
        command: secrets::SecretsCommand,
    },
    /// Delete objects: `wharf delete KIND NAME...` or `wharf delete -f FILE`.
    Delete {
        /// Kind followed by names.
        args: Vec<String>,
        /// Delete the objects described in these files.
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
        /// `Background` (default), `Foreground` or `Orphan`.
        #[arg(long = "cascade-policy")]
        propagation_policy: Option<String>,
        #[command(flatten)]
        target: client::Target,
    },
}

/// `wharf image ...`.
#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Upload an OCI image archive (an OCI layout in a tar, e.g. from `make samples`) to the
    /// control plane; nodes import it into containerd when a pod needs it.
    Import {
        /// The archive.
        file: PathBuf,
        /// NAME[:TAG] (default: the name recorded in the archive).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        target: client::Target,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args, up::Mode::AllInOne).await,
            Command::Server(args) => up::run(args, up::Mode::ControlPlane).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Apply { files, target } => client::apply(&target, &files).await,
            Command::Get {
                kind,
                name,
                output,
                all_namespaces,
                selector,
                target,
            } => {
                client::get(
                    &target,
                    &kind,
                    name.as_deref(),
                    &output,
                    all_namespaces,
                    selector.as_deref(),
                )
                .await
            }
            Command::Push { file, name, target } => client::push(&target, &file, name.as_deref())
                .await
                .map(drop),
            Command::Image {
                command: ImageCommand::Import { file, name, target },
            } => client::image_import(&target, &file, name.as_deref()).await,
            Command::Logs {
                pod,
                container,
                follow,
                target,
            } => client::logs(&target, &pod, container.as_deref(), follow).await,
            Command::Deploy {
                file,
                name,
                replicas,
                target,
            } => client::deploy(&target, &file, name.as_deref(), replicas).await,
            Command::Secrets { command } => secrets::run(command).await,
            Command::Delete {
                args,
                files,
                propagation_policy,
                target,
            } => client::delete(&target, &args, &files, propagation_policy.as_deref()).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
