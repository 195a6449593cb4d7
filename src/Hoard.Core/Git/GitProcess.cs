using System.Diagnostics;
using System.Text;

namespace Hoard.Core.Git;

/// <summary>
/// Runs the real git. Credentials never go in the arguments: an Authorization header reaches git as
/// http.extraHeader through GIT_CONFIG_COUNT/KEY/VALUE environment variables, which no process listing shows.
/// </summary>
public static class GitProcess
{
    public static ProcessStartInfo Start(IEnumerable<string> args, string? authorization = null, string? gitProtocol = null, IReadOnlyList<string>? headers = null)
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
        List<string> extra = [.. authorization is null ? [] : new[] { "Authorization: " + authorization }, .. headers ?? []];
        if (extra.Count > 0)
        {
            psi.Environment["GIT_CONFIG_COUNT"] = extra.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            for (var i = 0; i < extra.Count; i++)
            {
                psi.Environment[$"GIT_CONFIG_KEY_{i}"] = "http.extraHeader";
                psi.Environment[$"GIT_CONFIG_VALUE_{i}"] = extra[i];
            }
        }
        if (!string.IsNullOrEmpty(gitProtocol))
        {
            psi.Environment["GIT_PROTOCOL"] = gitProtocol;
        }
        return psi;
    }

    /// <summary>
    /// Runs a long git transfer (a mirror clone or fetch, with --progress) and kills it when it shows no progress
    /// for <paramref name="idleTimeout"/>: progress is anything on stderr, which --progress updates while objects
    /// arrive and the remote's side band while it counts and compresses. A stalled upstream cannot hold a process
    /// slot, or the clients waiting on it, forever. There is no total timeout: a big repository may take long.
    /// </summary>
    public static async Task<(int Code, string Error)> RunWatchedAsync(IEnumerable<string> args, string? authorization, TimeSpan idleTimeout, TimeProvider time, IReadOnlyList<string>? headers = null)
    {
        using var p = Process.Start(Start(args, authorization, headers: headers))!;
        p.StandardInput.Close();
        _ = p.StandardOutput.BaseStream.CopyToAsync(Stream.Null);
        using var idle = new CancellationTokenSource(idleTimeout, time);
        var tail = new StringBuilder();
        var buffer = new char[4096];
        var stalled = false;
        try
        {
            int n;
            while ((n = await p.StandardError.ReadAsync(buffer, idle.Token)) > 0)
            {
                idle.CancelAfter(idleTimeout);
                tail.Append(buffer, 0, n);
                if (tail.Length > 16_384)
                {
                    tail.Remove(0, tail.Length - 8_192);
                }
            }
            await p.WaitForExitAsync(idle.Token);
        }
        catch (OperationCanceledException)
        {
            // git may have ended just as the deadline came: then its exit code stands.
            stalled = !p.HasExited;
            if (stalled)
            {
                p.Kill(entireProcessTree: true);
            }
            await p.WaitForExitAsync(CancellationToken.None);
        }
        var error = LastMessage(tail.ToString());
        return stalled ? (-1, $"no progress for {idleTimeout.TotalSeconds:0} s (--git-fetch-idle-timeout); killed. Last: {error}") : (p.ExitCode, error);
    }

    /// <summary>The lines of stderr that say something: progress lines (rewritten in place with \r) are dropped.</summary>
    private static string LastMessage(string stderr)
    {
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => l.Split('\r', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "")
            .Where(l => l.Length > 0 && !l.Contains('%', StringComparison.Ordinal) && !l.EndsWith(", done.", StringComparison.Ordinal))
            .TakeLast(3);
        return string.Join(" | ", lines);
    }

    /// <summary>Runs git to completion; returns the exit code and what it wrote to stderr.</summary>
    public static async Task<(int Code, string Output, string Error)> RunAsync(IEnumerable<string> args, string? authorization, CancellationToken ct, string? input = null)
    {
        using var p = Process.Start(Start(args, authorization))!;
        if (input is not null)
        {
            await p.StandardInput.WriteAsync(input.AsMemory(), ct);
        }
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
