using Hoard.Core.Fetch;

namespace Hoard.Tests.Unit;

/// <summary>The dashboard's most requested artifacts: a Space-Saving sketch of fixed size.</summary>
public sealed class RequestSketchTests
{
    [Fact]
    public void Any_number_of_distinct_keys_is_kept_in_its_fixed_number_of_slots()
    {
        var sketch = new RequestSketch(64);
        for (var i = 0; i < 100_000; i++)
        {
            sketch.Record($"files/up/tool-{i}.tar.gz", i);
        }
        Assert.Equal(64, sketch.Count);
        Assert.Equal(64, sketch.Top(1000).Count);
        // Each was asked for once: none of them certainly more than once, however many slots they took over.
        Assert.All(sketch.Top(1000), k => Assert.Equal(1, k.Requests));
    }

    [Fact]
    public void The_heavy_hitters_are_found_among_many_more_keys_asked_for_once_and_never_overcounted()
    {
        var heavy = Enumerable.Range(0, 5).Select(i => $"oci/hub/library/popular-{i}").ToArray();
        var stream = heavy.SelectMany(k => Enumerable.Repeat(k, 1000)).Concat(Enumerable.Range(0, 30_000).Select(i => $"pypi/pypi/rare-{i}")).ToArray();
        new Random(13).Shuffle(stream);
        var sketch = new RequestSketch(64);
        for (var i = 0; i < stream.Length; i++)
        {
            sketch.Record(stream[i], i);
        }
        var top = sketch.Top(5);
        Assert.Equal(heavy.Order(StringComparer.Ordinal), top.Select(k => k.Key).Order(StringComparer.Ordinal));
        // A count it certainly had: never above the truth, and close to it for a key that held its slot from early on.
        Assert.All(top, k => Assert.InRange(k.Requests, 900, 1000));
        Assert.All(top, k => Assert.Equal(Array.LastIndexOf(stream, k.Key), k.LastMs));
        // The next ones are keys asked for once, which the sketch cannot tell apart: none is credited more than that.
        Assert.All(sketch.Top(64).Skip(5), k => Assert.Equal(1, k.Requests));
    }

    [Fact]
    public void Below_its_size_it_counts_exactly_from_many_threads_at_once_and_ranks_most_first()
    {
        var sketch = new RequestSketch(16);
        Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, t =>
        {
            for (var i = 0; i < 10_000; i++)
            {
                sketch.Record($"key-{Bucket(i % 55)}", 1000 + i);
            }
        });
        var top = sketch.Top(10);
        Assert.Equal(Enumerable.Range(0, 10).Reverse().Select(k => $"key-{k}"), top.Select(k => k.Key));
        Assert.Equal(4 * Enumerable.Range(0, 10_000).Count(i => Bucket(i % 55) == 9), top[0].Requests);
        Assert.Equal(4 * 10_000, sketch.Top(16).Sum(k => k.Requests));
    }

    /// <summary>Which key the i-th request of 55 asks for: 0 once, 1 twice, ..., 9 ten times.</summary>
    private static int Bucket(int r)
    {
        var k = 0;
        while (r > k)
        {
            r -= k + 1;
            k++;
        }
        return k;
    }
}
