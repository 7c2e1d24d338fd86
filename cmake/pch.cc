// Compiled only to produce the precompiled headers that every target of ours reuses
// (CMakeLists.txt, llmproxy_precompiled).
