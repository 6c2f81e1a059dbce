using DiffusionCore.Engine;
using DiffusionCore.Models.Networks.Cnf;
using DiffusionCore.Sampling.Likelihood;
using DiffusionCore.Sampling.Ode;

namespace DiffusionCore.Sampling.Flows;

/// <summary>How gradients of a continuous normalizing flow's loss are computed.</summary>
public enum FlowGradient
{
    /// <summary>
    /// The adjoint method (Chen et al. 2018, Algorithm 1): solve the adjoint ODE backwards in time; memory
    /// does not grow with the number of solver steps.
    /// </summary>
    Adjoint,

    /// <summary>Backpropagation through every operation of the forward solver (memory grows with the steps).</summary>
    Backprop,
}

/// <summary>Settings of a continuous normalizing flow's ODE solves.</summary>
public sealed record FlowOptions
{
    /// <summary>Integration time T: data at t = 0, the N(0, I) latent at t = T.</summary>
    public double EndTime { get; init; } = 1.0;

    /// <summary>Solver for every solve (forward, adjoint, sampling).</summary>
    public OdeMethod Method { get; init; } = OdeMethod.Rk45;

    /// <summary>Relative tolerance of the adaptive solver.</summary>
    public double RelativeTolerance { get; init; } = 1e-5;

    /// <summary>Absolute tolerance of the adaptive solver.</summary>
    public double AbsoluteTolerance { get; init; } = 1e-5;

    /// <summary>Number of steps of the fixed-step solvers.</summary>
    public int Steps { get; init; } = 20;

    /// <summary>How tr(df/dz) is computed: exactly (small d) or by Hutchinson with one probe fixed per solve.</summary>
    public DivergenceMethod Divergence { get; init; } = DivergenceMethod.HutchinsonRademacher;
}

/// <summary>
/// A continuous normalizing flow (Chen et al. 2018; FFJORD, Grathwohl et al. 2019): dz/dt = f_theta(z, t)
/// carries data z(0) = x to z(T) ~ N(0, I), and the instantaneous change of variables
/// d log p(z(t)) / dt = -tr(df/dz) gives log p(x) = log N(z(T); 0, I) + int_0^T tr(df/dz(t)) dt.
/// </summary>
public sealed class ContinuousFlow(IFlowDynamics dynamics, FlowOptions? options = null)
{
    /// <summary>The dynamics network f_theta.</summary>
    public IFlowDynamics Dynamics { get; } = dynamics;

    /// <summary>The solver settings.</summary>
    public FlowOptions Options { get; } = options ?? new FlowOptions();

    /// <summary>Statistics of the last solve (forward, or the adjoint's backward solve).</summary>
    public OdeStatistics? LastStatistics { get; private set; }

    /// <summary>
    /// log p(x) per sample ([B]) by integrating data to latent with the divergence, without recording a
    /// graph. A Hutchinson probe (if any) is drawn once from <paramref name="generator"/> and kept for the solve.
    /// </summary>
    public Tensor LogLikelihood(Tensor x, Generator generator)
    {
        using var noGrad = Autograd.NoGrad();
        var (z, integral) = Encode(x, generator);
        return Ops.Add(StandardNormalLogDensity(z), integral);
    }

    /// <summary>Maps data to latents: z(T) and int_0^T tr(df/dz) dt per sample, without a graph.</summary>
    public (Tensor Latent, Tensor DivergenceIntegral) Encode(Tensor x, Generator generator)
    {
        CheckData(x);
        var probe = Divergence.Probe(Options.Divergence, x, generator);
        using var noGrad = Autograd.NoGrad();
        var y = Solve((t, s) => AugmentedDynamics(s[0], t, probe), [x, Tensor.Zeros([x.Shape[0]], x.DType, x.Device)], 0, Options.EndTime);
        return (y[0], y[1]);
    }

    /// <summary>Maps latents z(T) back to data z(0) (no divergence needed).</summary>
    public Tensor Decode(Tensor z)
    {
        CheckData(z);
        using var noGrad = Autograd.NoGrad();
        return Solve((t, s) => [Dynamics.Forward(s[0], t)], [z], Options.EndTime, 0)[0];
    }

    /// <summary><paramref name="count"/> samples: z(T) ~ N(0, I) decoded to data.</summary>
    public Tensor Sample(int count, Generator generator)
    {
        var z = generator.Normal([count, Dynamics.Dim]);
        return Decode(z);
    }

    /// <summary>
    /// The training loss -mean_b log p(x_b) as a scalar whose backward fills the parameters' gradients, by
    /// <paramref name="gradient"/>: the adjoint method or backpropagation through the solver. One Hutchinson
    /// probe is drawn from <paramref name="generator"/> and used for the whole forward (and adjoint) solve.
    /// </summary>
    public Tensor NegativeLogLikelihood(Tensor x, Generator generator, FlowGradient gradient = FlowGradient.Adjoint)
    {
        CheckData(x);
        var probe = Divergence.Probe(Options.Divergence, x, generator);
        return gradient == FlowGradient.Adjoint ? AdjointLoss(x, probe) : BackpropLoss(x, probe);
    }

    private Tensor BackpropLoss(Tensor x, Tensor? probe)
    {
        var y = Solve((t, s) => AugmentedDynamicsWithGraph(s[0], t, probe), [x, Tensor.Zeros([x.Shape[0]], x.DType, x.Device)], 0, Options.EndTime, recordGraph: true);
        return Ops.Neg(Ops.Mean(Ops.Add(StandardNormalLogDensity(y[0]), y[1])));
    }

    /// <summary>
    /// The adjoint method. Forward: solve (z, Delta) from 0 to T without a graph. Loss
    /// L = -mean_b [log N(z_T) + Delta_T], so a_z(T) = z_T / B and a_Delta = -1/B (constant, as Delta does
    /// not feed back into the dynamics). Backward, T to 0 (Chen et al. 2018, eqs. 4-5, with the divergence
    /// term of the augmented state): dz/dt = f, da_z/dt = -dS/dz, da_theta/dt = -dS/dtheta with
    /// S = a_z . f(z, t) + a_Delta * div f(z, t), starting from a_theta(T) = 0; then dL/dtheta = a_theta(0).
    /// </summary>
    private Tensor AdjointLoss(Tensor x, Tensor? probe)
    {
        var parameters = Dynamics.Parameters();
        Tensor loss;
        Tensor[] final;
        using (Autograd.NoGrad())
        {
            final = Solve((t, s) => AugmentedDynamics(s[0], t, probe), [x, Tensor.Zeros([x.Shape[0]], x.DType, x.Device)], 0, Options.EndTime);
            loss = Ops.Neg(Ops.Mean(Ops.Add(StandardNormalLogDensity(final[0]), final[1])));
        }
        int batch = x.Shape[0];
        var zT = final[0];
        return Autograd.Function(loss, "ContinuousFlow.Adjoint", parameters, gradLoss =>
        {
            double scale = gradLoss.Item();
            double aDelta = -scale / batch;
            using var noGrad = Autograd.NoGrad();
            var state = new Tensor[2 + parameters.Count];
            state[0] = zT;
            state[1] = Ops.Scale(zT, scale / batch);
            for (int i = 0; i < parameters.Count; i++) state[2 + i] = Tensor.Zeros(parameters[i].Shape, parameters[i].DType, parameters[i].Device);
            var back = Solve((t, s) => AdjointDynamics(s, t, probe, aDelta, parameters), state, Options.EndTime, 0);
            return back.Skip(2).Select(g => (Tensor?)g).ToArray();
        });
    }

    private Tensor[] AdjointDynamics(Tensor[] s, double t, Tensor? probe, double aDelta, IReadOnlyList<Tensor> parameters)
    {
        using var grad = Autograd.EnableGrad();
        var z = s[0].Detach();
        z.RequiresGrad = true;
        var fz = Dynamics.Forward(z, t);
        var div = Divergence.Compute(Options.Divergence, fz, z, probe, createGraph: true);
        var objective = Ops.Add(Ops.Sum(Ops.Mul(s[1], fz)), Ops.Scale(Ops.Sum(div), aDelta));
        var inputs = new List<Tensor>(parameters.Count + 1) { z };
        inputs.AddRange(parameters);
        var grads = Autograd.Grad([objective], inputs, allowUnused: true);
        using var off = Autograd.NoGrad();
        var result = new Tensor[s.Length];
        result[0] = fz.Detach();
        for (int i = 0; i < grads.Length; i++)
            result[1 + i] = grads[i] is { } g ? Ops.Neg(g.Detach()) : Tensor.Zeros(inputs[i].Shape, inputs[i].DType, inputs[i].Device);
        return result;
    }

    /// <summary>[f(z, t), tr(df/dz)] evaluated with a local graph that is dropped afterwards.</summary>
    private Tensor[] AugmentedDynamics(Tensor state, double t, Tensor? probe)
    {
        using var grad = Autograd.EnableGrad();
        var z = state.Detach();
        z.RequiresGrad = true;
        var fz = Dynamics.Forward(z, t);
        var div = Divergence.Compute(Options.Divergence, fz, z, probe);
        return [fz.Detach(), div.Detach()];
    }

    /// <summary>[f(z, t), tr(df/dz)] recorded into the graph (z may itself carry a graph from earlier steps).</summary>
    private Tensor[] AugmentedDynamicsWithGraph(Tensor state, double t, Tensor? probe)
    {
        var z = state;
        if (!z.TracksGrad)
        {
            z = state.Detach();
            z.RequiresGrad = true;
        }
        var fz = Dynamics.Forward(z, t);
        return [fz, Divergence.Compute(Options.Divergence, fz, z, probe, createGraph: true)];
    }

    private Tensor[] Solve(OdeFunction f, Tensor[] y0, double t0, double t1, bool recordGraph = false)
    {
        var result = OdeSolver.Solve(f, y0, t0, t1, new OdeSolverOptions
        {
            Method = Options.Method,
            Steps = Options.Steps,
            RelativeTolerance = Options.RelativeTolerance,
            AbsoluteTolerance = Options.AbsoluteTolerance,
            RecordGraph = recordGraph,
        });
        LastStatistics = result.Statistics;
        return result.State;
    }

    /// <summary>log N(z; 0, I) per sample.</summary>
    public static Tensor StandardNormalLogDensity(Tensor z)
    {
        int d = (int)(z.Count / z.Shape[0]);
        return Ops.Affine(Divergence.PerSampleDot(z, z), -0.5, -0.5 * d * Math.Log(2 * Math.PI));
    }

    private void CheckData(Tensor x)
    {
        if (x.Rank != 2 || x.Shape[1] != Dynamics.Dim)
            throw new TensorException("ContinuousFlow", $"data must be [B, {Dynamics.Dim}], got {ShapeUtil.Format(x.Shape)}");
    }
}
