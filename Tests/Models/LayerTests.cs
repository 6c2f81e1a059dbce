using NUnit.Framework;
using DiffusionCore.Engine;
using DiffusionCore.Kernels;
using DiffusionCore.Models.Nn;

namespace DiffusionCore.Tests.Models;

/// <summary>The layers of Models/Nn: Conv2d and GroupNorm initialisation, dropout statistics, Fourier and class embeddings.</summary>
[TestFixture]
public class LayerTests
{
    [Test]
    public void Conv2dUsesPyTorchLayoutAndFanInBound()
    {
        using var scope = TensorScope.Begin();
        var conv = new Conv2d(4, 6, 3, new Generator(1), stride: 2, padding: 1);
        Assert.That(conv.Weight.Shape, Is.EqualTo(new[] { 6, 4, 3, 3 }));
        Assert.That(conv.Bias!.Shape, Is.EqualTo(new[] { 6 }));
        double bound = 1 / Math.Sqrt(4 * 9);
        var w = conv.Weight.ToArray();
        Assert.That(w.All(v => Math.Abs(v) <= bound), Is.True);
        // 216 draws of U(-b, b): the largest |w| falls below 0.9 b with probability 0.9^216 (about 1e-10).
        Assert.That(w.Max(v => Math.Abs(v)), Is.GreaterThan(0.9 * bound));
        var y = conv.Forward(new Generator(2).Normal([2, 4, 8, 8]));
        Assert.That(y.Shape, Is.EqualTo(new[] { 2, 6, 4, 4 }));
        var f64 = new Conv2d(4, 6, 3, new Generator(1), stride: 2, padding: 1, dtype: DType.Float64);
        Assert.That(f64.Weight.ToDoubleArray(), Is.EqualTo(w.Select(v => (double)v).ToArray()), "float64 layers hold the float32 draws");
    }

    [Test]
    public void GroupNormStartsAsPlainNormalisation()
    {
        using var scope = TensorScope.Begin();
        var norm = new GroupNorm(2, 4);
        Assert.That(norm.Weight.ToArray(), Is.All.EqualTo(1f));
        Assert.That(norm.Bias.ToArray(), Is.All.EqualTo(0f));
        Assert.That(norm.NamedParameters().Select(p => p.Name), Is.EqualTo(new[] { "weight", "bias" }));
        var x = new Generator(3).Normal([2, 4, 3, 3]);
        Assert.That(norm.Forward(x, silu: true).ToArray(), Is.EqualTo(Ops.Silu(Ops.GroupNorm(x, 2, norm.Weight, norm.Bias)).ToArray()).Within(1e-6),
            "fused SiLU equals SiLU after GroupNorm (float32 rounding of values of order 1)");
        Assert.Throws<ArgumentOutOfRangeException>(() => new GroupNorm(3, 4));
    }

    [Test]
    public void DropoutKeepsTheMeanAndIsTheIdentityInEvaluation()
    {
        using var scope = TensorScope.Begin();
        const double p = 0.1;
        const int n = 100_000;
        var dropout = new Dropout(p);
        var x = Tensor.Ones([n]);
        x.RequiresGrad = true;
        var y = dropout.Forward(x, new Generator(4));
        var v = y.ToArray();
        float kept = (float)(1 / (1 - p));
        Assert.That(v.All(e => e == 0f || e == kept), Is.True, "each element is dropped or scaled by 1/(1-p)");
        // Each element of y has mean 1 and variance p/(1-p) = 0.111, so the mean of n = 1e5 has standard deviation
        // sqrt(0.111 / 1e5) = 1.05e-3; the dropped fraction has standard deviation sqrt(p(1-p)/n) = 9.5e-4. Both
        // tolerances are 5 standard deviations (a false failure about once in 1.7 million seeds).
        Assert.That(v.Average(e => (double)e), Is.EqualTo(1.0).Within(5 * 1.05e-3));
        Assert.That(v.Count(e => e == 0f) / (double)n, Is.EqualTo(p).Within(5 * 9.5e-4));
        Ops.Sum(y).Backward();
        Assert.That(x.Grad!.ToArray(), Is.EqualTo(v), "the gradient is the same scaled mask");

        dropout.SetTraining(false);
        Assert.That(dropout.Forward(x, null), Is.SameAs(x), "evaluation mode returns the input itself");
        Assert.That(new Dropout(0).Forward(x, null), Is.SameAs(x), "p = 0 draws nothing");
        dropout.SetTraining(true);
        var e = Assert.Throws<InvalidOperationException>(() => dropout.Forward(x, null))!;
        Assert.That(e.Message, Does.Contain("DropoutGenerator"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Dropout(1.0));
    }

    [Test]
    public void GaussianFourierEmbeddingMatchesItsFormula()
    {
        using var scope = TensorScope.Begin();
        var emb = new GaussianFourierEmbedding(256, 16);
        Assert.That(new GaussianFourierEmbedding(256, 16).Frequencies, Is.EqualTo(emb.Frequencies), "the frequencies come from a fixed seed");
        // 128 draws of N(0, 16²): the sample standard deviation has a relative standard error of about 1/sqrt(2·128) = 6%;
        // 30% is 5 standard errors.
        double sd = Math.Sqrt(emb.Frequencies.Average(w => w * w));
        Assert.That(sd, Is.EqualTo(16.0).Within(0.3 * 16));

        double[] sigmas = [0.01, 1.0, 50.0];
        var y = emb.Forward(Tensor.FromArray(sigmas, 3)).ToDoubleArray();
        for (int b = 0; b < sigmas.Length; b++)
            for (int i = 0; i < 128; i++)
            {
                double arg = 2 * Math.PI * emb.Frequencies[i] * Math.Log(sigmas[b]);
                // float64 throughout: the only differences are the rounding of 2πW, log and the product (~1e-16 relative
                // on arguments up to ~1e3), so 1e-11 absolute.
                Assert.That(y[b * 256 + i], Is.EqualTo(Math.Sin(arg)).Within(1e-11));
                Assert.That(y[b * 256 + 128 + i], Is.EqualTo(Math.Cos(arg)).Within(1e-11));
            }
    }

    [Test]
    public void ClassEmbeddingLooksUpRowsAndAccumulatesGradients()
    {
        using var scope = TensorScope.Begin();
        var emb = new ClassEmbedding(3, 5, new Generator(5));
        Assert.That(emb.Weight.Shape, Is.EqualTo(new[] { 4, 5 }));
        Assert.That(emb.NullLabel, Is.EqualTo(3));
        var table = emb.Weight.ToArray();
        int[] labels = [2, 0, 3, 2];
        var y = emb.Forward(labels);
        var v = y.ToArray();
        for (int i = 0; i < labels.Length; i++)
            Assert.That(v[(i * 5)..(i * 5 + 5)], Is.EqualTo(table[(labels[i] * 5)..(labels[i] * 5 + 5)]), "one-hot · table picks the row exactly");
        var upstream = new Generator(6).Normal([4, 5]);
        Ops.Sum(Ops.Mul(y, upstream)).Backward();
        var g = emb.Weight.Grad!.ToArray();
        var u = upstream.ToArray();
        for (int j = 0; j < 5; j++)
        {
            // Row 2 receives the sum of samples 0 and 3 (one float32 addition, exact to 1 ulp).
            Assert.That(g[2 * 5 + j], Is.EqualTo(u[j] + u[15 + j]).Within(1e-6));
            Assert.That(g[0 * 5 + j], Is.EqualTo(u[5 + j]));
            Assert.That(g[1 * 5 + j], Is.EqualTo(0f));
            Assert.That(g[3 * 5 + j], Is.EqualTo(u[10 + j]));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => emb.Forward([4]));
        Assert.Throws<ArgumentOutOfRangeException>(() => emb.Forward([-1]));
    }
}
