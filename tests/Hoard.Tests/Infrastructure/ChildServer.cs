using System.Diagnostics;

namespace Hoard.Tests.Infrastructure;

/// <summary>A server run as a child process with a scratch directory: killed (SIGKILL) and cleaned up on dispose.</summary>
public abstract class ChildServer : IAsyncDisposable
{
    protected ChildServer(string prefix)
    {
        Dir = Directory.CreateTempSubdirectory(prefix).FullName;
    }

    protected string Dir { get; }
    protected Process? Process { get; set; }

    public void Kill()
    {
        if (Process is { HasExited: false })
        {
            Process.Kill(entireProcessTree: true);
            Process.WaitForExit();
        }
        Process = null;
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
        GC.SuppressFinalize(this);
        return ValueTask.CompletedTask;
    }
}
