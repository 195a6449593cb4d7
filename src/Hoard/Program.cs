using System.CommandLine;
using Hoard;

return await Cli.Build().Parse(args).InvokeAsync();
