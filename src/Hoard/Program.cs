using System.CommandLine;
using Hoard;

// No ProcessTerminationTimeout: System.CommandLine would answer SIGTERM by ending the process 2 seconds later;
// the web host handles SIGTERM and SIGINT itself, with a drain of --shutdown-timeout, and `serve` then returns 0.
return await Cli.Build().Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
