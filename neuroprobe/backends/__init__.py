"""Engines a neuroprobe network runs on. Only modules in this package import a backend library
(norse, Brian2, Lava); everything above talks to them through these modules."""
