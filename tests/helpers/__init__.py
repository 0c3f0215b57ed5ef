"""What the tests share: paths, independent references, fakes and job runners. No test
module imports another test module; they import from here."""
