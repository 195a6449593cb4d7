using System.CommandLine;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Hoard.Core.Configuration;
using Hoard.Core.Warm;

namespace Hoard;

/// <summary>
/// `hoard warm`: asks a node (or every node of a cluster) to fetch what lockfiles, image lists and repository URLs
/// name, and shows its progress. The node does the fetching through its own client routes; this command only reads
/// the user's files, sends the list and draws what comes back (<see cref="WarmDisplay"/>).
/// </summary>
public static class WarmCommand
{
    public static Command Build(bool pin = false)
    {
        var command = pin
            ? new Command("pin", "Keep packages, images or repositories in a node's cache for good: what is missing is fetched first (as hoard warm does), then each item becomes a pin of its name that eviction never takes. Pinned bytes count toward --max-size; a pin that does not fit is refused with the reason. hoard status lists pins; hoard unpin NAME removes one.")
            : new Command("warm", "Fetch into a node's cache, before anyone asks, the exact files a requirements file or lock pins, images (every platform's manifest and layer) and git repositories (mirror and clone bundle). Run again after an interruption: only what is missing is fetched.");
        var url = AdminClient.UrlOption();
        var tokenFile = AdminClient.TokenFileOption();
        var requirements = new Option<string[]>("--requirement", "-r") { Description = "a requirements file of == pins (pip-compile, uv pip compile; --hash lines pick exact files); repeatable" };
        var pylock = new Option<string[]>("--pylock") { Description = "a pylock.toml (PEP 751) or uv.lock: exactly the files it lists; repeatable" };
        var images = new Option<string[]>("--image") { Description = "an image as you would pull it: alpine, registry.example:5000/team/app:1.4, repo@sha256:…; repeatable" };
        var imagesFile = new Option<string[]>("--images-file") { Description = "a file of image references, one per line (# comments); repeatable" };
        var git = new Option<string[]>("--git") { Description = "a git repository by its upstream URL (under a --git upstream of the node); repeatable" };
        var python = new Option<string[]>("--python-version") { Description = "only wheels for this Python, as pip download's (3.12); repeatable" };
        var platform = new Option<string[]>("--platform") { Description = "wheels for this platform tag (manylinux_2_17_x86_64), or, with a slash, image platforms (linux/arm64); repeatable" };
        var packageOption = new Option<string[]>("--package") { Description = "a package version, NAME==VERSION; repeatable" };
        var index = new Option<string>("--index") { Description = "the node's PyPI index (its --pypi NAME) requirements come from; default its first" };
        var allNodes = new Option<bool>("--all-nodes") { Description = "warm every live node of the cluster --url belongs to, one after another: the first fetches from upstream, the rest from peers" };
        foreach (var o in new Option[] { url, tokenFile, requirements, pylock, packageOption, images, imagesFile, git, python, platform, index, allNodes })
        {
            command.Options.Add(o);
        }
        command.SetAction(async (parse, ct) =>
        {
            var problems = new List<WarmSources.Problem>();
            var platforms = parse.GetValue(platform) ?? [];
            var request = new WarmRequest
            {
                PythonVersions = [.. parse.GetValue(python) ?? []],
                Platforms = [.. platforms.Where(p => !p.Contains('/', StringComparison.Ordinal))],
                ImagePlatforms = [.. platforms.Where(p => p.Contains('/', StringComparison.Ordinal))],
                Git = [.. parse.GetValue(git) ?? []],
                Pin = pin,
            };
            try
            {
                foreach (var file in parse.GetValue(requirements) ?? [])
                {
                    request.Packages.AddRange(WarmSources.Requirements(file, problems));
                }
                foreach (var file in parse.GetValue(pylock) ?? [])
                {
                    request.Packages.AddRange(WarmSources.Lock(file, problems));
                }
                foreach (var p in parse.GetValue(packageOption) ?? [])
                {
                    var at = p.IndexOf("==", StringComparison.Ordinal);
                    if (at <= 0 || at + 2 >= p.Length)
                    {
                        await Console.Error.WriteLineAsync($"hoard: --package '{p}': expected NAME==VERSION");
                        return 2;
                    }
                    request.Packages.Add(new WarmPackage(p[..at].Trim(), p[(at + 2)..].Trim()));
                }
                request.Images.AddRange(parse.GetValue(images) ?? []);
                foreach (var file in parse.GetValue(imagesFile) ?? [])
                {
                    request.Images.AddRange(WarmSources.Images(file));
                }
            }
            catch (IOException e)
            {
                await Console.Error.WriteLineAsync("hoard: " + e.Message);
                return 2;
            }
            if (parse.GetValue(index) is { Length: > 0 } indexName)
            {
                request = request with { Packages = request.Packages.Select(p => p with { Index = indexName }).ToList() };
            }
            foreach (var problem in problems)
            {
                await Console.Error.WriteLineAsync($"hoard: {problem.Where}: {problem.Why}");
            }
            if (request.Packages.Count + request.Images.Count + request.Git.Count == 0)
            {
                await Console.Error.WriteLineAsync($"hoard: nothing to {command.Name}: give -r FILE, --pylock FILE, --package NAME==VERSION, --image REF, --images-file FILE or --git URL");
                return 2;
            }
            var (client, error) = AdminClient.Create(parse.GetValue(url), parse.GetValue(tokenFile));
            if (client is null)
            {
                await Console.Error.WriteLineAsync("hoard: " + error);
                return 2;
            }
            using (client)
            {
                var nodes = new List<Uri> { client.Node };
                if (parse.GetValue(allNodes))
                {
                    var (others, problem) = await AdminClient.ClusterNodesAsync(client, ct);
                    if (others is null)
                    {
                        await Console.Error.WriteLineAsync("hoard: --all-nodes: " + problem);
                        return 1;
                    }
                    // The addresses come from the cluster's Redis: the admin token goes only to nodes reached the way
                    // --url is (an https node is not asked over http).
                    foreach (var other in others.Where(o => !SameNode(o, client.Node) && o.Scheme != client.Node.Scheme))
                    {
                        await Console.Error.WriteLineAsync($"hoard: {other}: not warmed: the cluster lists it over {other.Scheme}, and --url is {client.Node.Scheme}");
                    }
                    nodes = [client.Node, .. others.Where(o => !SameNode(o, client.Node) && o.Scheme == client.Node.Scheme)];
                }
                var failed = problems.Any(p => !p.Why.StartsWith("not from an index", StringComparison.Ordinal));
                foreach (var node in nodes)
                {
                    var summary = await WarmNodeAsync(client, node, request, nodes.Count > 1, ct);
                    failed |= summary is null || summary.Failed > 0;
                }
                return failed ? 1 : 0;
            }
        });
        return command;
    }

    /// <summary>`hoard unpin NAME…`: removes pins by the names hoard status lists.</summary>
    public static Command BuildUnpin()
    {
        var command = new Command("unpin", "Remove pins by name (as hoard status lists them): their blobs are evicted again in their turn.");
        var url = AdminClient.UrlOption();
        var tokenFile = AdminClient.TokenFileOption();
        var names = new Argument<string[]>("name") { Description = "a pin's name: NAME==VERSION, an image reference or a repository URL, as it was pinned", Arity = ArgumentArity.OneOrMore };
        command.Options.Add(url);
        command.Options.Add(tokenFile);
        command.Arguments.Add(names);
        command.SetAction(async (parse, ct) =>
        {
            var (client, error) = AdminClient.Create(parse.GetValue(url), parse.GetValue(tokenFile));
            if (client is null)
            {
                await Console.Error.WriteLineAsync("hoard: " + error);
                return 2;
            }
            using (client)
            {
                var code = 0;
                foreach (var name in parse.GetValue(names) ?? [])
                {
                    using var message = new HttpRequestMessage(HttpMethod.Delete, new Uri(client.Node, PinEndpoint.Path + "?name=" + Uri.EscapeDataString(name)));
                    message.Headers.Authorization = client.Authorization;
                    try
                    {
                        using var response = await client.Http.SendAsync(message, ct);
                        if (response.IsSuccessStatusCode)
                        {
                            Console.WriteLine($"unpinned {name}");
                        }
                        else
                        {
                            await Console.Error.WriteLineAsync($"hoard: {name}: {(int)response.StatusCode} {(await response.Content.ReadAsStringAsync(ct)).Trim()}");
                            code = 1;
                        }
                    }
                    catch (HttpRequestException e)
                    {
                        await Console.Error.WriteLineAsync($"hoard: {client.Node}: {e.Message}");
                        return 1;
                    }
                }
                return code;
            }
        });
        return command;
    }

    private static bool SameNode(Uri a, Uri b) => Uri.Compare(a, b, UriComponents.SchemeAndServer, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) == 0;

    /// <summary>POSTs the request to one node and draws its events; the summary, or null when the node refused or broke off.</summary>
    private static async Task<WarmEvent?> WarmNodeAsync(AdminClient client, Uri node, WarmRequest request, bool nameNode, CancellationToken ct)
    {
        var body = JsonSerializer.Serialize(request, WarmJson.Default.WarmRequest);
        using var message = new HttpRequestMessage(HttpMethod.Post, new Uri(node, WarmEndpoint.Path)) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        message.Headers.Authorization = client.Authorization;
        HttpResponseMessage response;
        try
        {
            response = await client.Http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, ct);
        }
        catch (HttpRequestException e)
        {
            await Console.Error.WriteLineAsync($"hoard: {node}: {e.Message}");
            return null;
        }
        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                await Console.Error.WriteLineAsync($"hoard: {node}: {(int)response.StatusCode} {(await response.Content.ReadAsStringAsync(ct)).Trim()}");
                return null;
            }
            var display = WarmDisplay.Create(nameNode ? node.Authority : null);
            try
            {
                await using var stream = await response.Content.ReadAsStreamAsync(ct);
                return await display.RunAsync(ReadEventsAsync(stream, ct));
            }
            catch (Exception e) when (e is HttpRequestException or IOException or JsonException)
            {
                await Console.Error.WriteLineAsync($"hoard: {node}: the warm broke off ({e.Message}); run it again to fetch what is missing");
                return null;
            }
        }
    }

    private static async IAsyncEnumerable<WarmEvent> ReadEventsAsync(Stream stream, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        using var reader = new StreamReader(stream, Encoding.UTF8);
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (line.Length > 0 && JsonSerializer.Deserialize(line, WarmJson.Default.WarmEvent) is { } e)
            {
                yield return e;
            }
        }
    }
}
