using NUnit.Framework;
using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Networks;
using DiffusionCore.Models.Processes;
using DiffusionCore.Tests.Engine;

namespace DiffusionCore.Tests.Models;

/// <summary>
/// The DDPM U-Nets: parameter counts of the benchmark configurations (the PyTorch peer's counts), parameter paths,
/// output shapes, label and noise-level conditioning, dropout, gradients reaching every parameter, and float64
/// central-difference checks of first and second derivatives through a tiny net.
/// </summary>
[TestFixture]
public class UNetTests
{
    /// <summary>
    /// A tiny net that still has every part: two levels (a downsample and an upsample), a channel change (skip
    /// convolutions), attention at the lower level and in the middle, in != out channels.
    /// </summary>
    private static readonly UNetConfig Tiny = new()
    {
        Name = "tiny", InChannels = 2, OutChannels = 3, ImageSize = 8, Channels = 8, ChannelMult = [1, 2], NumResBlocks = 1,
        AttentionResolutions = [4], NormGroups = 4,
    };

    private static Tensor Input(UNetConfig c, int batch, ulong seed, DType dtype = DType.Float32) =>
        new Generator(seed).Normal([batch, c.InChannels, c.ImageSize, c.ImageSize], dtype);

    private static Tensor Times(params double[] t) => Tensor.FromSpan<double>(t, [t.Length], DType.Float32, null);

    [TestCase("unet-s", 1_112_801L)]
    [TestCase("unet-b", 6_472_195L)]
    [TestCase("ddpm-cifar10", 35_746_307L)]
    public void ParameterCountMatchesThePeer(string name, long expected)
    {
        var net = new UNet(UNetConfig.Get(name), new Generator(1));
        TestContext.Out.WriteLine($"{name}: {net.ParameterCount:N0} parameters in {net.NamedParameters().Count()} tensors");
        Assert.That(net.ParameterCount, Is.EqualTo(expected));
    }

    [Test]
    public void UnknownConfigurationNamesTheValidOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => UNetConfig.Get("unet-xl"))!;
        Assert.That(e.Message, Does.Contain("unet-xl").And.Contain("unet-s").And.Contain("unet-b").And.Contain("ddpm-cifar10"));
    }

    [Test]
    public void ParameterNamesFollowTheModulePaths()
    {
        var shapes = new UNet(UNetConfig.UnetS, new Generator(2)).NamedParameters().ToDictionary(p => p.Name, p => p.Tensor.Shape);
        // unet-s: ch 32, levels of 32, 64, 64 channels at 32, 16, 8; attention at 8x8 (level 2) and in the middle.
        var expected = new Dictionary<string, int[]>
        {
            ["temb.dense.0.weight"] = [128, 32],
            ["temb.dense.1.bias"] = [128],
            ["conv_in.weight"] = [32, 1, 3, 3],
            ["down.0.res.0.norm1.weight"] = [32],
            ["down.0.res.0.conv1.weight"] = [32, 32, 3, 3],
            ["down.0.res.0.temb_proj.weight"] = [32, 128],
            ["down.0.downsample.conv.weight"] = [32, 32, 3, 3],
            ["down.1.res.0.skip.weight"] = [64, 32, 1, 1],
            ["down.2.attn.0.q.weight"] = [64, 64, 1, 1],
            ["mid.res.1.conv2.weight"] = [64, 64, 3, 3],
            ["mid.attn.0.proj.bias"] = [64],
            // Level 0 of the up path: 64 channels from below + the downsample's 32-channel skip, then 32 + conv_in's 32.
            ["up.0.res.0.conv1.weight"] = [32, 96, 3, 3],
            ["up.0.res.0.skip.weight"] = [32, 96, 1, 1],
            ["up.0.res.1.conv1.weight"] = [32, 64, 3, 3],
            ["up.1.upsample.conv.weight"] = [64, 64, 3, 3],
            ["up.2.attn.1.norm.bias"] = [64],
            ["norm_out.weight"] = [32],
            ["conv_out.weight"] = [1, 32, 3, 3],
        };
        foreach (var (name, shape) in expected)
        {
            Assert.That(shapes.ContainsKey(name), Is.True, $"missing parameter {name}");
            Assert.That(shapes[name], Is.EqualTo(shape), name);
        }
        Assert.That(shapes.Keys.Where(k => k.StartsWith("mid.res.0.skip") || k.StartsWith("up.0.upsample") || k.StartsWith("down.2.downsample")), Is.Empty,
            "no skip conv without a channel change, no upsample at full resolution, no downsample at the last level");
        Assert.That(shapes.Keys.Where(k => k.Contains("attn") && !k.StartsWith("down.2") && !k.StartsWith("up.2") && !k.StartsWith("mid")), Is.Empty,
            "attention only at 8x8 and in the middle");
    }

    [Test]
    public void UnetSOutputHasTheInputShape()
    {
        using var scope = TensorScope.Begin();
        using var _ = Autograd.NoGrad();
        var net = new UNet(UNetConfig.UnetS, new Generator(3));
        var y = net.Forward(Input(UNetConfig.UnetS, 2, 4), Times(10, 900));
        Assert.That(y.Shape, Is.EqualTo(new[] { 2, 1, 32, 32 }));
        Assert.That(y.ToArray().All(float.IsFinite), Is.True);
    }

    [Test]
    public void TinyConfigMapsInChannelsToOutChannels()
    {
        using var scope = TensorScope.Begin();
        var net = new UNet(Tiny, new Generator(5));
        var y = net.Forward(Input(Tiny, 3, 6), Times(0, 500, 999));
        Assert.That(y.Shape, Is.EqualTo(new[] { 3, 3, 8, 8 }));
        Assert.That(y.ToArray().All(float.IsFinite), Is.True);
        Assert.Throws<TensorException>(() => net.Forward(Input(Tiny with { ImageSize = 16 }, 1, 6), Times(1)));
        Assert.Throws<TensorException>(() => net.Forward(Input(Tiny, 2, 6), Times(1)));
    }

    [Test]
    public void InferenceForwardThatFreesItsTemporariesMatchesTheRecordedForward()
    {
        // Without autograd the blocks free each intermediate once consumed and the pool reuses its buffer at once;
        // freeing one too early would surface as a disposed-tensor error or as a buffer overwritten by a later op.
        // The two passes run the same kernels on the same values, so they agree bit for bit.
        using var scope = TensorScope.Begin();
        foreach (var config in new[] { UNetConfig.UnetS, Tiny with { NumClasses = 2, Dropout = 0.2 } })
        {
            var net = new UNet(config, new Generator(25));
            net.SetTraining(false);
            var x = Input(config, 2, 26);
            var t = Times(30, 600);
            var recorded = net.Forward(x, t).ToArray();
            float[] inference;
            using (Autograd.NoGrad()) inference = net.Forward(x, t).ToArray();
            Assert.That(inference, Is.EqualTo(recorded), config.Name);
            Assert.That(x.IsDisposed, Is.False, "the caller's input is not freed");
        }
        var classifierConfig = Tiny with { OutChannels = null };
        var classifier = new NoisyClassifier(classifierConfig, 4, new Generator(27));
        var xc = Input(classifierConfig, 2, 28);
        var logits = classifier.Forward(xc, Times(5, 6)).ToArray();
        using (Autograd.NoGrad()) Assert.That(classifier.Forward(xc, Times(5, 6)).ToArray(), Is.EqualTo(logits), "classifier");
    }

    [Test]
    public void LabelsConditionEachSampleAndNullMeansNoLabel()
    {
        using var scope = TensorScope.Begin();
        using var _ = Autograd.NoGrad();
        var config = Tiny with { NumClasses = 3 };
        var net = new UNet(config, new Generator(7));
        Assert.That(net.NullLabel, Is.EqualTo(3));
        var x = Input(config, 2, 8);
        var t = Times(100, 100);
        var a = net.Forward(x, t, [0, 1]).ToArray();
        var b = net.Forward(x, t, [0, 2]).ToArray();
        int half = a.Length / 2;
        // Sample 0 kept its label: its output is computed by the same ops on the same values, so it is bit-identical;
        // sample 1's label changed, which moves its time embedding by a difference of two N(0, 1) rows.
        Assert.That(b[..half], Is.EqualTo(a[..half]), "a sample's output does not depend on another sample's label");
        Assert.That(MaxAbsDiff(a[half..], b[half..]), Is.GreaterThan(1e-3), "a sample's label changes its output");
        var none = net.Forward(x, t).ToArray();
        var explicitNull = net.Forward(x, t, [3, 3]).ToArray();
        Assert.That(none, Is.EqualTo(explicitNull), "no labels means the null label for every sample");
        Assert.That(MaxAbsDiff(none[..half], a[..half]), Is.GreaterThan(1e-3), "the null label is a class embedding of its own");

        Assert.Throws<ArgumentOutOfRangeException>(() => net.Forward(x, t, [0, 4]));
        Assert.Throws<ArgumentException>(() => net.Forward(x, t, [0]));
        var unconditional = new UNet(Tiny, new Generator(7));
        Assert.Throws<ArgumentException>(() => unconditional.Forward(x, t, [0, 1]));
    }

    [Test]
    public void SigmaConditioningUsesFourierFeaturesOfLogSigma()
    {
        using var scope = TensorScope.Begin();
        using var _ = Autograd.NoGrad();
        var config = Tiny with { Condition = ConditionKind.Sigma };
        var net = new UNet(config, new Generator(9));
        Assert.That(net.ParameterCount, Is.EqualTo(new UNet(Tiny, new Generator(9)).ParameterCount), "the condition kind does not change the parameters");
        var x = Input(config, 2, 10);
        var y1 = net.Forward(x, Times(0.01, 50)).ToArray();
        var y2 = net.Forward(x, Times(0.02, 50)).ToArray();
        int half = y1.Length / 2;
        Assert.That(y1.All(float.IsFinite), Is.True);
        Assert.That(y2[half..], Is.EqualTo(y1[half..]), "sample 1 kept its sigma");
        Assert.That(MaxAbsDiff(y1[..half], y2[..half]), Is.GreaterThan(1e-4), "sigma conditions the output");
        Assert.Throws<ArgumentOutOfRangeException>(() => net.Forward(x, Times(0.5, 0)), "sigma = 0 has no log: an error, not a NaN output");
    }

    [Test]
    public void GradientReachesEveryParameter()
    {
        using var scope = TensorScope.Begin();
        var net = new UNet(UNetConfig.UnetS, new Generator(11));
        var x = Input(UNetConfig.UnetS, 2, 12);
        var target = new Generator(13).Normal(x.Shape);
        Ops.MseLoss(net.Forward(x, Times(5, 700)), target).Backward();
        foreach (var (name, p) in net.NamedParameters())
        {
            Assert.That(p.Grad, Is.Not.Null, name);
            Assert.That(p.Grad!.Shape, Is.EqualTo(p.Shape), name);
            double sq = p.Grad.ToArray().Sum(g => (double)g * g);
            Assert.That(double.IsFinite(sq) && sq > 0, Is.True, $"{name}: squared gradient norm {sq}");
        }
    }

    [Test]
    public void LabelEmbeddingGetsGradientOnlyInUsedRows()
    {
        using var scope = TensorScope.Begin();
        var net = new UNet(Tiny with { NumClasses = 3 }, new Generator(14));
        Ops.Sum(Ops.Square(net.Forward(Input(Tiny, 2, 15), Times(1, 2), [2, 3]))).Backward();
        var grad = net.NamedParameters().Single(p => p.Name == "label_emb.weight").Tensor.Grad!.ToArray();
        int dim = Tiny.EmbeddingDim;
        double RowNorm(int r) => grad.Skip(r * dim).Take(dim).Sum(g => (double)g * g);
        Assert.That(RowNorm(0), Is.EqualTo(0.0), "label 0 unused");
        Assert.That(RowNorm(1), Is.EqualTo(0.0), "label 1 unused");
        Assert.That(RowNorm(2), Is.GreaterThan(0.0));
        Assert.That(RowNorm(3), Is.GreaterThan(0.0), "the null row is trained when used");
    }

    [Test]
    public void DropoutNeedsAGeneratorAndIsTheIdentityInEvaluation()
    {
        using var scope = TensorScope.Begin();
        var withDropout = new UNet(Tiny with { Dropout = 0.3 }, new Generator(16));
        var plain = new UNet(Tiny, new Generator(16));
        var x = Input(Tiny, 2, 17);
        var t = Times(3, 4);
        var e = Assert.Throws<InvalidOperationException>(() => withDropout.Forward(x, t))!;
        Assert.That(e.Message, Does.Contain("DropoutGenerator"));

        // Dropout draws nothing at construction, so both nets hold the same weights; in evaluation the dropout net
        // runs exactly the ops of the plain one.
        withDropout.SetTraining(false);
        Assert.That(withDropout.Forward(x, t).ToArray(), Is.EqualTo(plain.Forward(x, t).ToArray()));

        withDropout.SetTraining(true);
        withDropout.DropoutGenerator = new Generator(18);
        var first = withDropout.Forward(x, t).ToArray();
        var second = withDropout.Forward(x, t).ToArray();
        Assert.That(MaxAbsDiff(first, second), Is.GreaterThan(1e-4), "fresh masks on every training forward");
        withDropout.DropoutGenerator = new Generator(18);
        Assert.That(withDropout.Forward(x, t).ToArray(), Is.EqualTo(first), "the masks are a function of the generator state");
    }

    [Test]
    public void FirstAndSecondDerivativesMatchCentralDifferencesInFloat64()
    {
        // Tiny float64 net, 1x4x4 input; attention at 2x2 and in the middle. GradCheck's tolerances (1e-6 first
        // order, 1e-5 second order, relative to max(1, |derivative|)) are explained there; float64 rounding through
        // a net of this depth stays far below them.
        var config = new UNetConfig
        {
            Name = "tiny-f64", InChannels = 1, ImageSize = 4, Channels = 4, ChannelMult = [1, 2], NumResBlocks = 1,
            AttentionResolutions = [2], NormGroups = 2,
        };
        var net = new UNet(config, new Generator(19), dtype: DType.Float64);
        var inputs = GradCheck.MakeInputs(20, [[1, 1, 4, 4], [1]], u => 3 * u);
        Tensor F(Tensor[] v) => net.Forward(v[0], v[1]);
        GradCheck.FirstOrder(F, inputs);
        GradCheck.SecondOrder(F, inputs);
    }

    [Test]
    public void NoisyClassifierGivesLogitsPerSample()
    {
        using var scope = TensorScope.Begin();
        var config = Tiny with { OutChannels = null };
        var classifier = new NoisyClassifier(config, 5, new Generator(21));
        var withoutMiddle = new NoisyClassifier(config, 5, new Generator(21), useMiddle: false);
        var names = classifier.NamedParameters().Select(p => p.Name).ToList();
        Assert.That(names, Does.Contain("head.weight").And.Contain("norm_out.bias").And.Contain("mid.attn.0.q.weight").And.Contain("down.1.attn.0.k.bias"));
        Assert.That(names.Where(n => n.StartsWith("up.") || n.StartsWith("conv_out")), Is.Empty);
        Assert.That(withoutMiddle.NamedParameters().Any(p => p.Name.StartsWith("mid.")), Is.False);

        var x = Input(config, 2, 22);
        var logits = classifier.Forward(x, Times(10, 10));
        Assert.That(logits.Shape, Is.EqualTo(new[] { 2, 5 }));
        var later = classifier.Forward(x, Times(10, 800)).ToArray();
        Assert.That(later[..5], Is.EqualTo(logits.ToArray()[..5]));
        Assert.That(MaxAbsDiff(later[5..], logits.ToArray()[5..]), Is.GreaterThan(1e-5), "the time conditions the logits");

        Ops.CrossEntropy(logits, [1, 4]).Backward();
        Assert.That(classifier.Parameters().All(p => p.Grad is not null), Is.True);
        Assert.Throws<ArgumentException>(() => new NoisyClassifier(config with { NumClasses = 3 }, 5, new Generator(1)));
    }

    [Test]
    public void AttnBlockEqualsTheConvolutionFormulation()
    {
        // The block computes its 1x1 convolutions as transposed GEMMs; the reference is the textbook form: 1x1 convs
        // on NCHW, permute to [B, HW, C], softmax(q kᵀ / sqrt C) v with the composite attention, permute back, 1x1 conv.
        using var scope = TensorScope.Begin();
        var block = new AttnBlock(8, 4, 1e-6, new Generator(23));
        var x = new Generator(24).Normal([2, 8, 4, 3]);
        var w = block.NamedParameters().ToDictionary(p => p.Name, p => p.Tensor);
        var h = Ops.GroupNorm(x, 4, w["norm.weight"], w["norm.bias"], 1e-6);
        Tensor Tokens(string name) => Ops.Permute(Ops.Reshape(Ops.Conv2d(h, w[name + ".weight"], w[name + ".bias"]), 2, 8, 12), 0, 2, 1);
        var o = Ops.AttentionComposite(Tokens("q"), Tokens("k"), Tokens("v"));
        var back = Ops.Reshape(Ops.Permute(o, 0, 2, 1), 2, 8, 4, 3);
        var expected = Ops.Add(x, Ops.Conv2d(back, w["proj.weight"], w["proj.bias"]));
        // float32, values of order 1 through sums of 8 to 12 terms: a few ulps of 1, far below 1e-5.
        Assert.That(block.Forward(x).ToArray(), Is.EqualTo(expected.ToArray()).Within(1e-5));
    }

    private static double MaxAbsDiff(float[] a, float[] b) => a.Zip(b, (u, v) => Math.Abs((double)u - v)).Max();
}
