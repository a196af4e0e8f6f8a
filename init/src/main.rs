//! `ros`: PID 1 of the machine and the `ros` command line, one binary.

fn main() -> std::process::ExitCode {
    ros::cli::run(std::env::args_os())
}
