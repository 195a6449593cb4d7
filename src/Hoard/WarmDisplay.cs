using Hoard.Core.Configuration;
using Hoard.Core.Warm;
using Spectre.Console;

namespace Hoard;

/// <summary>
/// Draws a warm's events: a progress bar per item on a terminal (Spectre.Console), one line per finished item when
/// the output is a file or a pipe (CI logs), and a summary either way: fetched, already cached, failed, bytes.
/// </summary>
public sealed class WarmDisplay
{
    private readonly string? _node;
    private readonly IAnsiConsole _console;

    private WarmDisplay(string? node, IAnsiConsole console)
    {
        _node = node;
        _console = console;
    }

    public static WarmDisplay Create(string? node) => new(node, AnsiConsole.Console);

    /// <summary>
    /// Text from the node (names, errors that may quote an upstream) without control characters: nothing upstream
    /// wrote can move the cursor or recolour the user's terminal.
    /// </summary>
    private static string Clean(string? text) => string.Concat((text ?? "").Select(c => char.IsControl(c) ? ' ' : c));

    private string Prefix => _node is null ? "" : _node + ": ";

    /// <summary>Draws events until the summary; returns it (null if the stream ended without one).</summary>
    public async Task<WarmEvent?> RunAsync(IAsyncEnumerable<WarmEvent> events)
    {
        WarmEvent? summary = null;
        var failures = new List<WarmEvent>();
        if (_console.Profile.Capabilities.Interactive && !Console.IsOutputRedirected)
        {
            await _console.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn())
                .StartAsync(async progress =>
                {
                    var tasks = new Dictionary<int, ProgressTask>();
                    await foreach (var e in events)
                    {
                        switch (e.Type)
                        {
                            case "item":
                                tasks[e.Id] = progress.AddTask(Markup.Escape(Prefix + Clean(e.Name)), maxValue: 1).IsIndeterminate(true);
                                break;
                            case "progress" when tasks.TryGetValue(e.Id, out var task):
                                if (e.Total is { } total && total >= e.Bytes)
                                {
                                    task.IsIndeterminate(false).MaxValue(total);
                                }
                                task.Value(e.Bytes);
                                break;
                            case "done" when tasks.TryGetValue(e.Id, out var task):
                                if (e.Error is null)
                                {
                                    task.MaxValue(Math.Max(1, e.Bytes)).Value(Math.Max(1, e.Bytes)).IsIndeterminate(false);
                                }
                                task.Description = Markup.Escape(Prefix + Clean(e.Name)) + (e.Error is not null ? " [red]failed[/]" : e.Pinned == true ? " [green]pinned[/]" : " [green]done[/]");
                                task.StopTask();
                                if (e.Error is not null)
                                {
                                    failures.Add(e);
                                }
                                break;
                            case "summary":
                                summary = e;
                                break;
                        }
                    }
                });
            foreach (var f in failures)
            {
                _console.MarkupLine($"[red]failed[/] {Markup.Escape(Prefix + Clean(f.Name))}: {Markup.Escape(Clean(f.Error))}");
            }
        }
        else
        {
            await foreach (var e in events)
            {
                if (e.Type == "done")
                {
                    Console.WriteLine(Line(e));
                }
                else if (e.Type == "summary")
                {
                    summary = e;
                }
            }
        }
        Console.WriteLine(summary is null ? $"{Prefix}the warm ended without a summary: run it again to fetch what is missing" : Prefix + Summary(summary));
        return summary;
    }

    private string Line(WarmEvent e) => e.Error is null
        ? $"{Prefix}{Clean(e.Name)}: {Counts(e)}{(e.Pinned == true ? "; pinned" : "")}"
        : $"{Prefix}{Clean(e.Name)}: FAILED: {Clean(e.Error)} ({Counts(e)})";

    private static string Counts(WarmEvent e) =>
        $"{e.Fetched} fetched ({ValueParsers.FormatSize(e.FetchedBytes)}), {e.Cached} already cached, {e.Failed} failed";

    /// <summary>"warm: 30 fetched (1.2 GiB), 4 already cached, 0 item(s) failed; 1.3 GiB in all".</summary>
    public static string Summary(WarmEvent s) =>
        $"warm: {s.Fetched} fetched ({ValueParsers.FormatSize(s.FetchedBytes)}), {s.Cached} already cached, {s.Failed} item(s) failed; {ValueParsers.FormatSize(s.Bytes)} in all";
}
