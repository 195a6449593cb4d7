using System.Diagnostics;

namespace Hoard.Core.Git;

/// <summary>
/// Runs the real git. Credentials never go in the arguments: an Authorization header reaches git as
/// http.extraHeader through GIT_CONFIG_COUNT/KEY/VALUE environment variables, which no process listing shows.
/// </summary>
public static class GitProcess
{
    public static ProcessStartInfo Start(IEnumerable<string> args, string? authorization = null, string? gitProtocol = null)
    {
        var psi = new ProcessStartInfo("git")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["GIT_TERMINAL_PROMPT"] = "0";
        psi.Environment["GIT_NO_LAZY_FETCH"] = "1";
        psi.Environment.Remove("GIT_DIR");
        if (authorization is not null)
        {
            psi.Environment["GIT_CONFIG_COUNT"] = "1";
            psi.Environment["GIT_CONFIG_KEY_0"] = "http.extraHeader";
            psi.Environment["GIT_CONFIG_VALUE_0"] = "Authorization: " + authorization;
        }
        if (!string.IsNullOrEmpty(gitProtocol))
        {
            psi.Environment["GIT_PROTOCOL"] = gitProtocol;
        }
        return psi;
    }

    /// <summary>Runs git to completion; returns the exit code and what it wrote to stderr.</summary>
    public static async Task<(int Code, string Output, string Error)> RunAsync(IEnumerable<string> args, string? authorization, CancellationToken ct)
    {
        using var p = Process.Start(Start(args, authorization))!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        try
        {
            await p.WaitForExitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }
        return (p.ExitCode, await stdout, await stderr);
    }
}
