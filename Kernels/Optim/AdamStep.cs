namespace DiffusionCore.Kernels;

/// <summary>
/// Scalars of one Adam step. BiasCorrection1/2 are 1 - beta1^t and 1 - beta2^t for step t.
/// With <see cref="Decoupled"/> the weight decay is AdamW's p -= lr * wd * p; otherwise it is added
/// to the gradient (L2 regularisation, classic Adam).
/// </summary>
public readonly record struct AdamStep(double LearningRate, double Beta1, double Beta2, double Epsilon,
    double WeightDecay, bool Decoupled, double BiasCorrection1, double BiasCorrection2);
